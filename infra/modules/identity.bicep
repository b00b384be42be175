// The app's user-assigned managed identity. Its client id goes to the app as
// AZURE_CLIENT_ID; its principal id gets the app's roles (AcrPull on the
// registry, Cognitive Services OpenAI User on the Azure OpenAI account).
// Being user-assigned, it exists before the container app does, so the roles
// are in place when the app first starts and pulls its image.

@description('Name of the identity.')
param name string

@description('Region of the identity.')
param location string

@description('Tags for the identity.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: name
  location: location
  tags: tags
}

@description('Resource id of the identity, to attach it to the container app.')
output id string = identity.id

@description('Client id of the identity: the app sets AZURE_CLIENT_ID to it.')
output clientId string = identity.properties.clientId

@description('Principal (object) id of the identity, for role assignments.')
output principalId string = identity.properties.principalId
