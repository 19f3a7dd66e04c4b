// Log Analytics and a workspace-based Application Insights that accepts only telemetry
// authenticated with Microsoft Entra ID (local authentication off). The app's identity gets
// Monitoring Metrics Publisher on the component (see roles.bicep) and the app names it in
// APPLICATIONINSIGHTS_AUTHENTICATION_STRING.

@description('Required. Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Required. Name of the Application Insights component.')
param applicationInsightsName string

@description('Optional. Azure region of the monitoring resources.')
param location string = resourceGroup().location

@description('Optional. Tags applied to the monitoring resources.')
param tags object = {}

@description('Optional. Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

@description('Optional. Accept only Microsoft Entra-authenticated telemetry (local authentication off).')
param disableLocalAuth bool = true

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      enableLogAccessUsingOnlyResourcePermissions: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: disableLocalAuth
    IngestionMode: 'LogAnalytics'
  }
}

@description('Resource id of the Application Insights component.')
output applicationInsightsId string = appInsights.id

@description('Name of the Application Insights component.')
output applicationInsightsName string = appInsights.name

@description('Connection string of the Application Insights component (not a secret: it holds no key).')
output connectionString string = appInsights.properties.ConnectionString

@description('Resource id of the Log Analytics workspace.')
output logAnalyticsId string = workspace.id
