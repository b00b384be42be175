// The app on Azure Container Apps: the environment (logs through Azure Monitor
// to the workspace, no workspace key), and the container app itself.
//
// The container app runs as the user-assigned identity: it pulls its image
// from the registry with that identity (no registry password) and hands the
// identity's client id to the app as AZURE_CLIENT_ID for its token requests.
// Ingress is HTTPS only; liveness and readiness probes call the app's health
// endpoints; an HTTP rule scales on concurrent requests.

@description('Name of the Container Apps environment.')
param environmentName string

@description('Name of the container app.')
param appName string

@description('Region of the environment and the app.')
param location string

@description('Tags for the environment and the app.')
param tags object

@description('Service name in azure.yaml; azd finds the app by its azd-service-name tag.')
param serviceName string

@description('Resource id of the Log Analytics workspace that receives the logs.')
param logAnalyticsWorkspaceId string

@description('Login server of the registry the image comes from.')
param registryServer string

@description('Resource id of the app user-assigned identity.')
param identityId string

@description('Client id of the app identity, given to the app as AZURE_CLIENT_ID.')
param identityClientId string

@description('Image to run; empty: a public placeholder until azd deploys the app.')
param image string

@description('Port the app listens on; ingress and the probes use it.')
param targetPort int

@minValue(0)
@description('Fewest replicas.')
param minReplicas int

@minValue(1)
@description('Most replicas.')
param maxReplicas int

@minValue(1)
@description('Concurrent requests per replica above which another replica starts.')
param concurrentRequests int

@description('CPU cores per replica (0.25 steps, paired with memory).')
param cpuCores string = '0.5'

@description('Memory per replica, twice the CPU cores in GiB.')
param memory string = '1Gi'

@description('Azure OpenAI endpoint, given to the app as AZURE_OPENAI_ENDPOINT.')
param openAiEndpoint string

@description('Chat deployment name, given to the app as AZURE_OPENAI_CHAT_DEPLOYMENT.')
param chatDeploymentName string

@description('Azure OpenAI API version, given to the app as AZURE_OPENAI_API_VERSION.')
param openAiApiVersion string

// Runs until the first `azd deploy` replaces it; it does not listen on the
// app's port, so its revision stays unready until then.
var placeholderImage = 'mcr.microsoft.com/k8se/quickstart:latest'

resource appEnvironment 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: environmentName
  location: location
  tags: tags
  properties: {
    appLogsConfiguration: {
      destination: 'azure-monitor'
    }
    workloadProfiles: [
      {
        name: 'Consumption'
        workloadProfileType: 'Consumption'
      }
    ]
  }
}

resource environmentLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'logs-to-workspace'
  scope: appEnvironment
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: appName
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    managedEnvironmentId: appEnvironment.id
    workloadProfileName: 'Consumption'
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: targetPort
        transport: 'auto'
        allowInsecure: false
      }
      registries: [
        {
          server: registryServer
          identity: identityId
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'chatapp'
          image: empty(image) ? placeholderImage : image
          resources: {
            cpu: json(cpuCores)
            memory: memory
          }
          env: [
            {
              name: 'AZURE_CLIENT_ID'
              value: identityClientId
            }
            {
              name: 'AZURE_TENANT_ID'
              value: tenant().tenantId
            }
            {
              name: 'AZURE_OPENAI_ENDPOINT'
              value: openAiEndpoint
            }
            {
              name: 'AZURE_OPENAI_CHAT_DEPLOYMENT'
              value: chatDeploymentName
            }
            {
              name: 'AZURE_OPENAI_API_VERSION'
              value: openAiApiVersion
            }
            {
              name: 'RUNNING_IN_PRODUCTION'
              value: 'true'
            }
            {
              // Only the deployed identity may authorize the app: a missing or
              // detached identity fails at once instead of trying developer tools.
              name: 'AZURE_TOKEN_CREDENTIALS'
              value: 'prod'
            }
            {
              name: 'PORT'
              value: string(targetPort)
            }
          ]
          probes: [
            {
              type: 'Liveness'
              httpGet: {
                path: '/healthz'
                port: targetPort
                scheme: 'HTTP'
              }
              initialDelaySeconds: 2
              periodSeconds: 10
              timeoutSeconds: 3
              failureThreshold: 3
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/readyz'
                port: targetPort
                scheme: 'HTTP'
              }
              initialDelaySeconds: 2
              periodSeconds: 5
              timeoutSeconds: 3
              failureThreshold: 3
            }
          ]
        }
      ]
      scale: {
        minReplicas: minReplicas
        maxReplicas: maxReplicas
        rules: [
          {
            name: 'http-concurrency'
            http: {
              metadata: {
                concurrentRequests: string(concurrentRequests)
              }
            }
          }
        ]
      }
    }
  }
}

@description('Name of the Container Apps environment.')
output environmentName string = appEnvironment.name

@description('Name of the container app.')
output name string = app.name

@description('HTTPS address of the app.')
output uri string = 'https://${app.properties.configuration.ingress.fqdn}'
