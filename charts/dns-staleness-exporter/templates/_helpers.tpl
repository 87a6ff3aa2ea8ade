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
{{- with .Values.image.registry | default .Values.global.imageRegistry }}{{ $repo = printf "%s/%s" . $repo }}{{ end }}
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
{{- if .Values.sharding.enabled }}
{{- $c = merge (dict "shard_service" (printf "%s/%s" (include "dse.namespace" .) (include "dse.fullname" .))) (deepCopy $c) }}
{{- end }}
{{- toYaml $c }}
{{- end }}

{{/* Namespaces that need a Role when config.namespaces restricts the watches. */}}
{{- define "dse.roleNamespaces" -}}
{{- $all := concat .Values.config.namespaces (list .Values.config.kube_dns_namespace) }}
{{- if .Values.sharding.enabled }}
{{- $all = append $all (include "dse.namespace" .) }}
{{- end }}
{{- toJson (uniq $all) }}
{{- end }}

{{/* The monitors' relabelling: `node` comes from the scrape, never from the agent. */}}
{{- define "dse.nodeRelabeling" -}}
- sourceLabels: [__meta_kubernetes_pod_node_name]
  action: replace
  targetLabel: node
{{- end }}

{{/* The web config file's content: webConfig.config, or TLS alone from webConfig.tlsSecretName. */}}
{{- define "dse.webConfig" -}}
{{- $w := .Values.webConfig }}
{{- if $w.config }}
{{- toYaml $w.config }}
{{- else if $w.tlsSecretName }}
tls_server_config:
  cert_file: /etc/dns-staleness-exporter/tls/tls.crt
  key_file: /etc/dns-staleness-exporter/tls/tls.key
{{- end }}
{{- end }}

{{/* "https" when the agent serves TLS, else "http". */}}
{{- define "dse.scheme" -}}
{{- $web := include "dse.webConfig" . | fromYaml }}
{{- ternary "https" "http" (hasKey $web "tls_server_config") }}
{{- end }}

{{/* A monitor's scheme: its own, else the agent's. */}}
{{- define "dse.monitorScheme" -}}
{{- .monitor.scheme | default (include "dse.scheme" .root) }}
{{- end }}

{{/* A kubelet probe of `path`. Required client certificates shut out the kubelet, which has
none, from any HTTP probe: then it can only see that the port is open. */}}
{{- define "dse.probe" -}}
{{- $web := include "dse.webConfig" .root | fromYaml }}
{{- $auth := dig "tls_server_config" "client_auth_type" "" $web }}
{{- if hasPrefix "Require" $auth }}
tcpSocket:
  port: http-metrics
{{- else }}
httpGet:
  path: {{ .path }}
  port: http-metrics
  {{- if eq (include "dse.scheme" .root) "https" }}
  scheme: HTTPS
  {{- end }}
{{- end }}
{{- end }}

{{/* What a monitor endpoint shares between the ServiceMonitor and the PodMonitor. */}}
{{- define "dse.monitorEndpoint" -}}
{{- $m := .monitor }}
port: http-metrics
scheme: {{ include "dse.monitorScheme" . }}
path: {{ .root.Values.config.telemetry_path }}
interval: {{ $m.interval }}
scrapeTimeout: {{ $m.scrapeTimeout }}
{{- if $m.honorLabels }}
honorLabels: true
{{- end }}
{{- with $m.tlsConfig }}
tlsConfig:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $m.basicAuth }}
basicAuth:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $m.authorization }}
authorization:
  {{- toYaml . | nindent 2 }}
{{- end }}
relabelings:
  {{- include "dse.nodeRelabeling" .root | nindent 2 }}
  {{- with $m.relabelings }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $m.metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A monitor's spec before its endpoints: job label, limits, namespace and selector. */}}
{{- define "dse.monitorSpec" -}}
{{- $m := .monitor }}
{{- with $m.jobLabel }}
jobLabel: {{ . }}
{{- end }}
{{- with $m.sampleLimit }}
sampleLimit: {{ . }}
{{- end }}
namespaceSelector:
  matchNames: [{{ include "dse.namespace" .root }}]
selector:
  {{- if $m.selectorOverride }}
  {{- toYaml $m.selectorOverride | nindent 2 }}
  {{- else }}
  matchLabels:
    {{- include "dse.selectorLabels" .root | nindent 4 }}
  {{- end }}
{{- end }}

{{/* Refuses values that would render but not work. */}}
{{- define "dse.validate" -}}
{{- if and .Values.serviceMonitor.enabled .Values.podMonitor.enabled }}
{{- fail "serviceMonitor.enabled and podMonitor.enabled would both scrape every pod, so every series twice: enable one" }}
{{- end }}
{{- if and .Values.sharding.enabled (not .Values.service.enabled) }}
{{- fail "sharding.enabled reads the fleet from the chart's Service: set service.enabled, or sharding.enabled=false" }}
{{- end }}
{{- if and .Values.config.kubernetes_authorization (dig "basic_auth_users" nil .Values.webConfig.config) }}
{{- fail "config.kubernetes_authorization and webConfig.config.basic_auth_users both read the Authorization header: use one" }}
{{- end }}
{{- end }}
