// The Log Analytics workspace that keeps the app's console and system logs.
// The Container Apps environment sends them through Azure Monitor diagnostic
// settings (see containerapp.bicep), so no workspace key is ever read, and
// the workspace refuses key-based ingestion.

@description('Name of the workspace.')
param name string

@description('Region of the workspace.')
param location string

@description('Tags for the workspace.')
param tags object

@minValue(30)
@description('Days the logs are kept.')
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: true
    }
  }
}

@description('Resource id of the workspace, for diagnostic settings.')
output workspaceId string = workspace.id
