// The function app on the Flex Consumption plan (Linux, Python 3.11), running as the
// user-assigned identity, with every app setting the app reads. The names in `appSettings`
// are checked against shared/settings.py by tests/infra/test_bicep.py: every setting without a
// default must be here, and nothing may be here that the app (or the Functions host, for the
// short allow-list in that test) does not read.

@description('Required. Name of the function app.')
param name string

@description('Required. Name of the Flex Consumption plan.')
param planName string

@description('Optional. Azure region of the plan and the app.')
param location string = resourceGroup().location

@description('Optional. Tags applied to the plan and the app.')
param tags object = {}

@description('Optional. Value of the azd-service-name tag, which azd uses to find the app to deploy to.')
param azdServiceName string = 'api'

@description('Required. Resource id of the user-assigned managed identity the app runs as.')
param identityId string

@description('Required. Client id of the user-assigned managed identity.')
param identityClientId string

@description('Required. Name of the storage account (host storage, queues, tables).')
param storageAccountName string

@description('Required. Blob endpoint of the storage account, ending with a slash.')
param storageBlobEndpoint string

@description('Required. Name of the blob container that holds the deployment package.')
param deploymentContainerName string

@description('Required. Connection string of the Application Insights component.')
param applicationInsightsConnectionString string

@description('Required. Versionless Key Vault URI of the service\'s client secret.')
param clientSecretUri string

@description('Optional. Python version of the Flex Consumption runtime.')
@allowed([
  '3.11'
])
param pythonVersion string = '3.11'

@description('Optional. Largest number of instances the app scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Optional. Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Optional. Origins allowed to call the API from a browser (CORS), e.g. the Outlook add-in\'s host https://addin.contoso.com; empty for none.')
param corsAllowedOrigins array = []

// --- settings the app requires (shared/settings.py fields without a default) ---------------

@description('Required. Dataverse organisation URL, e.g. https://contoso.crm.dynamics.com (DATAVERSE_URL).')
param dataverseUrl string

@description('Required. Directory (tenant) id of the organisation (ENTRA_TENANT_ID).')
param entraTenantId string

@description('Required. Application (client) id of the service app registration (ENTRA_CLIENT_ID).')
param entraClientId string

@description('Required. Audience of tokens the add-in and admins send to the API (API_AUDIENCE).')
param apiAudience string

// --- settings that binding expressions in function_app.py resolve (%NAME%) ------------------

@description('Required. Queue of per-mailbox sync jobs (SYNC_QUEUE_NAME).')
param syncQueueName string

@description('Required. Queue of add-in actions to retry (INTENT_QUEUE_NAME).')
param intentQueueName string

@description('Required. NCRONTAB schedule of the scheduler timer (SCHEDULER_SCHEDULE).')
param schedulerSchedule string

// --- optional settings: empty or 0 leaves the setting out, so the app's default applies -------

@description('Optional. Use the managed identity for app-only Graph and Dataverse tokens (USE_MANAGED_IDENTITY).')
param useManagedIdentity bool = false

@description('Optional. Prefix of every table name (TABLE_PREFIX); empty for the app default.')
param tablePrefix string = ''

@description('Optional. Normal sync interval in minutes (SYNC_INTERVAL_MINUTES); 0 for the app default.')
@minValue(0)
@maxValue(60)
param syncIntervalMinutes int = 0

@description('Optional. Shortest sync interval in minutes (SYNC_INTERVAL_MIN_MINUTES); 0 for the app default.')
@minValue(0)
@maxValue(60)
param syncIntervalMinMinutes int = 0

@description('Optional. Longest sync interval in minutes (SYNC_INTERVAL_MAX_MINUTES); 0 for the app default.')
@minValue(0)
@maxValue(60)
param syncIntervalMaxMinutes int = 0

@description('Optional. Comma-separated domains of the organisation (ORGANIZATION_DOMAINS); empty for none.')
param organizationDomains string = ''

@description('Optional. Tracking option of new mailboxes (DEFAULT_TRACKING_OPTION); empty for the app default.')
@allowed([
  ''
  'all'
  'responses_to_crm'
  'from_leads_contacts_accounts'
  'from_email_enabled_records'
  'none'
])
param defaultTrackingOption string = ''

@description('Optional. Outlook category that marks tracked items (TRACKED_CATEGORY); empty for the app default.')
param trackedCategory string = ''

@description('Optional. Delegated scope an add-in token must carry (API_SCOPE); empty for the app default.')
param apiScope string = ''

@description('Optional. App role required by the /api/admin endpoints (ADMIN_ROLE); empty for the app default.')
param adminRole string = ''

var appSettings = {
  // Functions host (read by the host, not by the app)
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // identity-based host and app storage: no key, no connection string
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // upstream services and identity
  DATAVERSE_URL: dataverseUrl
  ENTRA_TENANT_ID: entraTenantId
  ENTRA_CLIENT_ID: entraClientId
  ENTRA_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${clientSecretUri})'
  USE_MANAGED_IDENTITY: useManagedIdentity ? 'true' : 'false'
  MANAGED_IDENTITY_CLIENT_ID: identityClientId
  API_AUDIENCE: apiAudience
  // binding expressions
  SYNC_QUEUE_NAME: syncQueueName
  INTENT_QUEUE_NAME: intentQueueName
  SCHEDULER_SCHEDULE: schedulerSchedule
}

var optionalAppSettings = union(
  empty(tablePrefix) ? {} : { TABLE_PREFIX: tablePrefix },
  syncIntervalMinutes == 0 ? {} : { SYNC_INTERVAL_MINUTES: string(syncIntervalMinutes) },
  syncIntervalMinMinutes == 0 ? {} : { SYNC_INTERVAL_MIN_MINUTES: string(syncIntervalMinMinutes) },
  syncIntervalMaxMinutes == 0 ? {} : { SYNC_INTERVAL_MAX_MINUTES: string(syncIntervalMaxMinutes) },
  empty(organizationDomains) ? {} : { ORGANIZATION_DOMAINS: organizationDomains },
  empty(defaultTrackingOption) ? {} : { DEFAULT_TRACKING_OPTION: defaultTrackingOption },
  empty(trackedCategory) ? {} : { TRACKED_CATEGORY: trackedCategory },
  empty(apiScope) ? {} : { API_SCOPE: apiScope },
  empty(adminRole) ? {} : { ADMIN_ROLE: adminRole }
)

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': azdServiceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      cors: {
        allowedOrigins: corsAllowedOrigins
        supportCredentials: false
      }
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }

  resource settings 'config' = {
    name: 'appsettings'
    properties: union(appSettings, optionalAppSettings)
  }
}

@description('Name of the function app.')
output name string = functionApp.name

@description('Default host name of the function app.')
output defaultHostName string = functionApp.properties.defaultHostName

@description('Resource id of the function app.')
output resourceId string = functionApp.id
