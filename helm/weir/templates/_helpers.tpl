{{/* Chart name, at most 63 characters. */}}
{{- define "weir.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects. At most 52 characters: the StatefulSet's pods add
"-N" and the controller-revision-hash label adds 11 more, and the headless Service adds "-headless".
*/}}
{{- define "weir.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "weir.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Kubernetes recommended labels, on every object. */}}
{{- define "weir.labels" -}}
helm.sh/chart: {{ include "weir.chart" . }}
{{ include "weir.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: weir
{{- end }}

{{/* Labels that select the release's broker pods. */}}
{{- define "weir.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The headless Service that gives each pod its stable DNS name. */}}
{{- define "weir.headlessName" -}}
{{- printf "%s-headless" (include "weir.fullname" .) }}
{{- end }}

{{/* DNS suffix after a pod name: .HEADLESS.NAMESPACE.svc.CLUSTER_DOMAIN */}}
{{- define "weir.podDomain" -}}
{{- printf ".%s.%s.svc.%s" (include "weir.headlessName" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/*
The controller quorum: node id N at pod N's internal address, for the first controller.voters
pods ("0@weir-0.weir-headless.ns.svc.cluster.local:9094,1@...").
*/}}
{{- define "weir.controllerVoters" -}}
{{- $fullname := include "weir.fullname" . }}
{{- $domain := include "weir.podDomain" . }}
{{- $voters := list }}
{{- range $i := until (int .Values.controller.voters) }}
{{- $voters = append $voters (printf "%d@%s-%d%s:%d" $i $fullname $i $domain (int $.Values.ports.internal)) }}
{{- end }}
{{- join "," $voters }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "weir.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "weir.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The broker's TOML config file, from .Values.config (keys sorted). */}}
{{- define "weir.configToml" -}}
# Cluster-wide settings from the chart's `config` value. Per-node settings (node id, listen
# and advertised addresses, controller voters, rack, data dir) are flags in the StatefulSet.
{{- range $key, $value := .Values.config }}
{{- if not (kindIs "invalid" $value) }}
{{ $key }} = {{ toJson $value }}
{{- end }}
{{- end }}
{{- end }}

{{/* Refuse values that would render a cluster that cannot work. */}}
{{- define "weir.validate" -}}
{{- if gt (int .Values.controller.voters) (int .Values.replicaCount) }}
{{- fail (printf "controller.voters (%d) must be at most replicaCount (%d): the voters are the first pods" (int .Values.controller.voters) (int .Values.replicaCount)) }}
{{- end }}
{{- $rf := get .Values.config "default_replication_factor" | default 1 }}
{{- if gt (int $rf) (int .Values.replicaCount) }}
{{- fail (printf "config.default_replication_factor (%d) must be at most replicaCount (%d)" (int $rf) (int .Values.replicaCount)) }}
{{- end }}
{{- $shutdownMs := get .Values.config "controlled_shutdown_timeout_ms" | default 5000 }}
{{- if le (mul (int .Values.terminationGracePeriodSeconds) 1000) (int64 $shutdownMs) }}
{{- fail (printf "terminationGracePeriodSeconds (%d s) must exceed config.controlled_shutdown_timeout_ms (%d ms), or Kubernetes kills brokers in the middle of a controlled shutdown" (int .Values.terminationGracePeriodSeconds) (int64 $shutdownMs)) }}
{{- end }}
{{- end }}
