// Server-side sync on Azure Functions (Flex Consumption, Python 3.11).
//
// Subscription-scoped so that `azd up` creates the resource group too. What it deploys:
// a user-assigned managed identity; a storage account without shared keys (deployment package,
// host state, queues, tables); Log Analytics and Application Insights with Entra-only ingestion;
// a Key Vault (RBAC, soft delete, purge protection) for the service's client secret; the
// function app with identity-based connections and every app setting it reads; and the role
// assignments that tie them together. See docs/deploy.md.

targetScope = 'subscription'

// --- environment ------------------------------------------------------------------------------

@description('Required. Name of the azd environment; it names the resource group and seeds every resource name.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Required. Azure region of every resource; it must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@minLength(1)
param location string

@description('Optional. Name of the resource group; empty for rg-<environmentName>.')
param resourceGroupName string = ''

@description('Optional. Tags applied to every resource.')
param tags object = {}

@description('Optional. Object id of the administrator running the deployment (azd sets AZURE_PRINCIPAL_ID); it gets Key Vault Secrets Officer on the vault to store the client secret. Empty for none.')
param principalId string = ''

@description('Optional. Type of the principalId principal.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

// --- the function app --------------------------------------------------------------------------

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

@description('Optional. Redundancy of the storage account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Optional. Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

// --- required app settings ---------------------------------------------------------------------

@description('Required. Dataverse organisation URL, e.g. https://contoso.crm.dynamics.com (DATAVERSE_URL).')
@minLength(9)
param dataverseUrl string

@description('Optional. Directory (tenant) id of the organisation (ENTRA_TENANT_ID); defaults to the tenant of the deployment.')
param entraTenantId string = tenant().tenantId

@description('Required. Application (client) id of the service app registration (ENTRA_CLIENT_ID).')
@minLength(36)
@maxLength(36)
param entraClientId string

@description('Required. Application ID URI (or client id) of the API app registration the add-in signs in to (API_AUDIENCE).')
@minLength(1)
param apiAudience string

@description('Optional. Client secret of the service app registration, stored in the Key Vault. Leave empty and set it afterwards with az keyvault secret set (see docs/deploy.md).')
@secure()
param entraClientSecret string = ''

@description('Optional. Name of the Key Vault secret that holds the client secret (ENTRA_CLIENT_SECRET refers to it).')
param clientSecretName string = 'entra-client-secret'

// --- optional app settings (defaults match shared/settings.py) ---------------------------------

@description('Optional. Queue of per-mailbox sync jobs (SYNC_QUEUE_NAME).')
@minLength(3)
@maxLength(63)
param syncQueueName string = 'sync-jobs'

@description('Optional. Queue of add-in actions to retry (INTENT_QUEUE_NAME).')
@minLength(3)
@maxLength(63)
param intentQueueName string = 'intent-retries'

@description('Optional. NCRONTAB schedule (six fields) of the scheduler timer (SCHEDULER_SCHEDULE).')
param schedulerSchedule string = '0 */1 * * * *'

@description('Optional. Use the managed identity for app-only Graph and Dataverse tokens instead of the client secret (USE_MANAGED_IDENTITY); on-behalf-of still uses the secret.')
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

// --- names -----------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var allTags = union(tags, { 'azd-env-name': environmentName })
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: allTags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: allTags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: allTags
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
    queueNames: [
      syncQueueName
      intentQueueName
    ]
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: allTags
    retentionInDays: logRetentionInDays
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: allTags
    clientSecretName: clientSecretName
    clientSecretValue: entraClientSecret
  }
}

module roles 'modules/roles.bicep' = {
  name: 'roles'
  scope: rg
  params: {
    identityPrincipalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    adminPrincipalId: principalId
    adminPrincipalType: principalType
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: allTags
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    clientSecretUri: keyVault.outputs.clientSecretUri
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    corsAllowedOrigins: corsAllowedOrigins
    dataverseUrl: dataverseUrl
    entraTenantId: entraTenantId
    entraClientId: entraClientId
    apiAudience: apiAudience
    syncQueueName: syncQueueName
    intentQueueName: intentQueueName
    schedulerSchedule: schedulerSchedule
    useManagedIdentity: useManagedIdentity
    tablePrefix: tablePrefix
    syncIntervalMinutes: syncIntervalMinutes
    syncIntervalMinMinutes: syncIntervalMinMinutes
    syncIntervalMaxMinutes: syncIntervalMaxMinutes
    organizationDomains: organizationDomains
    defaultTrackingOption: defaultTrackingOption
    trackedCategory: trackedCategory
    apiScope: apiScope
    adminRole: adminRole
  }
  // the app must not start before its identity can read storage, the secret and telemetry
  dependsOn: [
    roles
  ]
}

@description('Region of the deployment (azd reads it).')
output AZURE_LOCATION string = location

@description('Tenant of the deployment (azd reads it).')
output AZURE_TENANT_ID string = tenant().tenantId

@description('Resource group of the deployment.')
output AZURE_RESOURCE_GROUP string = rg.name

@description('Name of the function app.')
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name

@description('Base URL of the API.')
output SERVICE_API_URI string = 'https://${functionApp.outputs.defaultHostName}/api'

@description('Name of the Key Vault that holds the client secret.')
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name

@description('Name of the Key Vault secret that ENTRA_CLIENT_SECRET refers to.')
output AZURE_KEY_VAULT_SECRET_NAME string = clientSecretName

@description('Client id of the app\'s user-assigned managed identity (MANAGED_IDENTITY_CLIENT_ID).')
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId

@description('Object id of the app\'s user-assigned managed identity.')
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId

@description('Name of the storage account.')
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
