// The Key Vault that holds the service's client secret. Access is by Azure RBAC only; the
// function app reads the secret through a Key Vault reference with its user-assigned identity
// (Key Vault Secrets User, see roles.bicep). Soft delete and purge protection are on.

@description('Required. Name of the Key Vault (3-24 letters, digits and hyphens).')
@minLength(3)
@maxLength(24)
param name string

@description('Optional. Azure region of the Key Vault.')
param location string = resourceGroup().location

@description('Optional. Tags applied to the Key Vault.')
param tags object = {}

@description('Required. Name of the secret that holds the client secret of the service app registration.')
param clientSecretName string

@description('Optional. Value of the client secret. Leave empty to set the secret after provisioning (az keyvault secret set); the app setting refers to the secret either way.')
@secure()
param clientSecretValue string = ''

@description('Optional. Days a deleted vault or secret can be recovered.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource clientSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(clientSecretValue)) {
  parent: vault
  name: clientSecretName
  properties: {
    value: clientSecretValue
    contentType: 'text/plain'
  }
}

@description('Resource id of the Key Vault.')
output resourceId string = vault.id

@description('Name of the Key Vault.')
output name string = vault.name

@description('URI of the Key Vault, ending with a slash.')
output vaultUri string = vault.properties.vaultUri

@description('Versionless URI of the client secret, for a Key Vault reference (the app follows rotations).')
output clientSecretUri string = '${vault.properties.vaultUri}secrets/${clientSecretName}'
