// Everything `azd up` provisions for the securechat example app, keyless from
// end to end: no key is created, stored, passed or output anywhere.
//
// The app runs on Azure Container Apps under a user-assigned managed identity.
// That identity pulls the image from the registry (AcrPull) and calls Azure
// OpenAI (Cognitive Services OpenAI User); the account has key access turned
// off. The person running azd gets the same Azure OpenAI role, so the app also
// runs locally with their own sign-in after `azd up`.
//
// Outputs land in .azure/<env>/.env under their own names: the variables the
// app and the keyless package read. infra/infra_test.go keeps the two in step.

targetScope = 'subscription'

// ---------------------------------------------------------------------------
// Where, and for whom

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names the resource group and seeds resource names.')
param environmentName string

@minLength(1)
@description('Region of the resource group, the app, its registry and its logs.')
param location string

// An existing group must be in the region given by location.
@description('Resource group to deploy into. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

// Empty (as in CI without a signed-in user) skips the assignment.
@description('Object id of whoever runs azd: gets Cognitive Services OpenAI User on the account.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
  'Group'
])
@description('Kind of principal principalId is: User for a person, ServicePrincipal in CI.')
param principalType string = 'User'

@description('Whether principalId gets Cognitive Services OpenAI User (to run the app locally).')
param assignDeployerRole bool = true

// ---------------------------------------------------------------------------
// Azure OpenAI

// An existing account keeps its name and gets key access turned off.
@description('Azure OpenAI account name. Empty: a new account named oai-<token>.')
param openAiResourceName string = ''

// Any group other than the app's must already exist.
@description('Resource group of the Azure OpenAI account. Empty: the app resource group.')
param openAiResourceGroupName string = ''

@metadata({
  azd: {
    type: 'location'
    usageName: [
      'OpenAI.GlobalStandard.gpt-4o-mini,30'
    ]
  }
})
@description('Region of the Azure OpenAI account; it must offer the chat model.')
param openAiLocation string

@description('Pricing tier of the Azure OpenAI account.')
param openAiSkuName string = 'S0'

// Disabled needs a private endpoint, which this template does not create.
@allowed([
  'Enabled'
  'Disabled'
])
@description('Whether the Azure OpenAI account accepts traffic from public networks.')
param openAiPublicNetworkAccess string = 'Enabled'

@description('Name of the model deployment the app sends chat completions to.')
param chatDeploymentName string = 'gpt-4o-mini'

@description('Model behind the chat deployment.')
param chatModelName string = 'gpt-4o-mini'

@description('Version of the chat model.')
param chatModelVersion string = '2024-07-18'

@description('Deployment type of the chat model: GlobalStandard, Standard, DataZoneStandard.')
param chatDeploymentSkuName string = 'GlobalStandard'

@minValue(1)
@description('Capacity of the chat deployment, in thousands of tokens per minute.')
param chatDeploymentCapacity int = 30

@description('Azure OpenAI API version for the app: v1, or a dated version such as 2024-10-21.')
param openAiApiVersion string = 'v1'

// ---------------------------------------------------------------------------
// The container app

@description('Port the app listens on (its PORT default); ingress and probes target it.')
param appPort int = 8080

// 0 lets the app scale to zero when idle: cheapest, but the first request
// after a quiet spell waits for a replica to start.
@minValue(0)
@description('Fewest replicas of the app.')
param minReplicas int = 0

@minValue(1)
@description('Most replicas the HTTP scale rule may run.')
param maxReplicas int = 3

@minValue(1)
@description('Concurrent requests per replica above which another replica starts.')
param concurrentRequests int = 20

// azd records the image it deployed as SERVICE_WEB_IMAGE_NAME. On the first
// provision there is none yet, and a public placeholder runs until azd deploys.
@description('Container image of the app; empty: a placeholder until azd deploys the app.')
param imageName string = ''

// ---------------------------------------------------------------------------

// The service name in azure.yaml; azd finds the container app by this tag.
var serviceName = 'web'
var tags = {
  'azd-env-name': environmentName
}
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var openAiGroupName = empty(openAiResourceGroupName) ? group.name : openAiResourceGroupName
var openAiName = empty(openAiResourceName) ? 'oai-${resourceToken}' : openAiResourceName

resource group 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: group
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: group
  params: {
    name: 'log-${resourceToken}'
    location: location
    tags: tags
  }
}

module registry 'modules/registry.bicep' = {
  name: 'registry'
  scope: group
  params: {
    name: 'cr${resourceToken}'
    location: location
    tags: tags
    pullPrincipalId: identity.outputs.principalId
  }
}

module openAi 'modules/openai.bicep' = {
  name: 'openai'
  scope: resourceGroup(openAiGroupName)
  dependsOn: [
    group
  ]
  params: {
    name: openAiName
    location: openAiLocation
    tags: tags
    skuName: openAiSkuName
    publicNetworkAccess: openAiPublicNetworkAccess
    chatDeploymentName: chatDeploymentName
    chatModelName: chatModelName
    chatModelVersion: chatModelVersion
    chatDeploymentSkuName: chatDeploymentSkuName
    chatDeploymentCapacity: chatDeploymentCapacity
    appPrincipalId: identity.outputs.principalId
    deployerPrincipalId: assignDeployerRole ? principalId : ''
    deployerPrincipalType: principalType
  }
}

module app 'modules/containerapp.bicep' = {
  name: 'containerapp'
  scope: group
  params: {
    environmentName: 'cae-${resourceToken}'
    appName: 'ca-${resourceToken}'
    location: location
    tags: tags
    serviceName: serviceName
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
    registryServer: registry.outputs.loginServer
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    image: imageName
    targetPort: appPort
    minReplicas: minReplicas
    maxReplicas: maxReplicas
    concurrentRequests: concurrentRequests
    openAiEndpoint: openAi.outputs.endpoint
    chatDeploymentName: openAi.outputs.chatDeploymentName
    openAiApiVersion: openAiApiVersion
  }
}

// ---------------------------------------------------------------------------
// Outputs: azd writes each to .azure/<env>/.env under its own name.

// What the app and the keyless package read.
output AZURE_OPENAI_ENDPOINT string = openAi.outputs.endpoint
output AZURE_OPENAI_CHAT_DEPLOYMENT string = openAi.outputs.chatDeploymentName
output AZURE_OPENAI_API_VERSION string = openAiApiVersion
output AZURE_TENANT_ID string = tenant().tenantId

// What azd needs to deploy, and where everything is.
output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = group.name
output AZURE_CONTAINER_REGISTRY_ENDPOINT string = registry.outputs.loginServer
output AZURE_CONTAINER_REGISTRY_NAME string = registry.outputs.name
output AZURE_CONTAINER_ENVIRONMENT_NAME string = app.outputs.environmentName
output SERVICE_WEB_NAME string = app.outputs.name
output SERVICE_WEB_URI string = app.outputs.uri

// The account in use, so that later runs of azd keep using it.
output AZURE_OPENAI_RESOURCE string = openAi.outputs.name
output AZURE_OPENAI_RESOURCE_GROUP string = openAiGroupName
output AZURE_OPENAI_RESOURCE_GROUP_LOCATION string = openAiLocation
