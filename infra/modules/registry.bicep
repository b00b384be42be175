// The container registry azd pushes the app's image to. No admin user, so no
// registry password exists: azd pushes with the deploying user's Microsoft
// Entra sign-in, and the app pulls with its managed identity, which gets
// AcrPull here. (The Basic tier has no anonymous pull.)

@description('Name of the registry: 5 to 50 letters and digits, globally unique.')
param name string

@description('Region of the registry.')
param location string

@description('Tags for the registry.')
param tags object

@description('Principal id of the app identity, which gets AcrPull on the registry.')
param pullPrincipalId string

// Built-in role AcrPull: read images from the registry.
var acrPullRoleId = '7f951dda-4ed3-4680-a7ca-43fe172d538d'
var roleDefinitions = 'Microsoft.Authorization/roleDefinitions'

resource registry 'Microsoft.ContainerRegistry/registries@2025-04-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Basic'
  }
  properties: {
    adminUserEnabled: false
    publicNetworkAccess: 'Enabled'
  }
}

resource appPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, pullPrincipalId, acrPullRoleId)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId(roleDefinitions, acrPullRoleId)
    principalId: pullPrincipalId
    principalType: 'ServicePrincipal'
  }
}

@description('Name of the registry.')
output name string = registry.name

@description('Login server of the registry, such as crabc123.azurecr.io.')
output loginServer string = registry.properties.loginServer
