// The Azure OpenAI account, its chat model deployment, and who may call it.
//
// Keyless: disableLocalAuth turns the account's keys off, so only Microsoft
// Entra ID tokens are accepted, and those need the custom subdomain
// (https://<name>.openai.azure.com/). Callers need the built-in role
// Cognitive Services OpenAI User: the app's managed identity always, the
// person running azd unless deployerPrincipalId is empty.
//
// Naming an existing account (azd env set AZURE_OPENAI_RESOURCE ...) updates
// it to this shape: same name, location and tier, keys off, the chat
// deployment added or updated.

@description('Name of the account; also its custom subdomain.')
param name string

@description('Region of the account.')
param location string

@description('Tags for the account.')
param tags object

@description('Pricing tier of the account.')
param skuName string = 'S0'

@allowed([
  'Enabled'
  'Disabled'
])
@description('Whether the account accepts traffic from public networks.')
param publicNetworkAccess string = 'Enabled'

@description('Name of the chat model deployment.')
param chatDeploymentName string

@description('Model behind the chat deployment.')
param chatModelName string

@description('Version of the chat model.')
param chatModelVersion string

@description('Deployment type of the chat model, such as GlobalStandard.')
param chatDeploymentSkuName string

@minValue(1)
@description('Capacity of the chat deployment, in thousands of tokens per minute.')
param chatDeploymentCapacity int

@description('Principal id of the app identity; always gets Cognitive Services OpenAI User.')
param appPrincipalId string

@description('Object id of whoever runs azd; empty: no role for them.')
param deployerPrincipalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
@description('Kind of principal deployerPrincipalId is.')
param deployerPrincipalType string = 'User'

// Built-in role Cognitive Services OpenAI User: inference, no management.
var openAiUserRoleId = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'
var roleDefinitions = 'Microsoft.Authorization/roleDefinitions'
var assignDeployer = !empty(deployerPrincipalId)

resource account 'Microsoft.CognitiveServices/accounts@2025-06-01' = {
  name: name
  location: location
  tags: tags
  kind: 'OpenAI'
  sku: {
    name: skuName
  }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: publicNetworkAccess
  }
}

resource chat 'Microsoft.CognitiveServices/accounts/deployments@2025-06-01' = {
  parent: account
  name: chatDeploymentName
  sku: {
    name: chatDeploymentSkuName
    capacity: chatDeploymentCapacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: chatModelName
      version: chatModelVersion
    }
  }
}

resource appUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appPrincipalId, openAiUserRoleId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId(roleDefinitions, openAiUserRoleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource deployerUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (assignDeployer) {
  name: guid(account.id, deployerPrincipalId, openAiUserRoleId)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId(roleDefinitions, openAiUserRoleId)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
  }
}

@description('Name of the account.')
output name string = account.name

@description('Endpoint of the account, https://<name>.openai.azure.com/.')
output endpoint string = account.properties.endpoint

@description('Name of the chat model deployment.')
output chatDeploymentName string = chat.name
