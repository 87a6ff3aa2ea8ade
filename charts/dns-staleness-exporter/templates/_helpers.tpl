{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "dse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release already has it. */}}
{{- define "dse.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dse.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "dse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dse.labels" -}}
helm.sh/chart: {{ include "dse.chart" . }}
{{ include "dse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: metrics
app.kubernetes.io/part-of: {{ include "dse.name" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "dse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "dse.image" -}}
{{- $repo := .Values.image.repository }}
{{- with .Values.image.registry }}{{ $repo = printf "%s/%s" . $repo }}{{ end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The agent's config file: values.config, after the checks JSON schema cannot express. */}}
{{- define "dse.config" -}}
{{- $c := .Values.config }}
{{- if gt (float64 $c.probe_burst) (float64 $c.probe_budget_qps) }}
{{- fail (printf "config.probe_burst (%v) must not exceed config.probe_budget_qps (%v)" $c.probe_burst $c.probe_budget_qps) }}
{{- end }}
{{- toYaml $c }}
{{- end }}

{{/* Namespaces that need a Role when config.namespaces restricts the watches. */}}
{{- define "dse.roleNamespaces" -}}
{{- $all := concat .Values.config.namespaces (list .Values.config.kube_dns_namespace) }}
{{- toJson (uniq $all) }}
{{- end }}

{{/* The monitors' relabelling: `node` comes from the scrape, never from the agent. */}}
{{- define "dse.nodeRelabeling" -}}
- sourceLabels: [__meta_kubernetes_pod_node_name]
  action: replace
  targetLabel: node
{{- end }}
