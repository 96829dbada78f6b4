{{/*
Chart name, overridable with nameOverride (63 characters at most: a label value).
*/}}
{{- define "prompt-defenders.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the operator's objects: fullnameOverride, else the release name when it already
contains the chart name, else <release>-<chart>.
*/}}
{{- define "prompt-defenders.fullname" -}}
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

{{/*
chart label value: <name>-<version>.
*/}}
{{- define "prompt-defenders.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels every object of the release carries.
*/}}
{{- define "prompt-defenders.labels" -}}
helm.sh/chart: {{ include "prompt-defenders.chart" . }}
{{ include "prompt-defenders.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: prompt-defenders
{{- end }}

{{/*
Selector labels of the operator's pods (stable across upgrades: never add a version here).
*/}}
{{- define "prompt-defenders.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prompt-defenders.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Labels of the objects that are not part of the operator itself (dashboard, alerts, samples):
the standard labels with their own component.
*/}}
{{- define "prompt-defenders.componentLabels" -}}
helm.sh/chart: {{ include "prompt-defenders.chart" .root }}
app.kubernetes.io/name: {{ include "prompt-defenders.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: prompt-defenders
{{- end }}

{{/*
The operator's ServiceAccount.
*/}}
{{- define "prompt-defenders.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "prompt-defenders.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image references; an empty tag means the chart's appVersion.
*/}}
{{- define "prompt-defenders.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) }}
{{- end }}

{{- define "prompt-defenders.scannerImage" -}}
{{- printf "%s:%s" .Values.scanner.image.repository (default .Chart.AppVersion .Values.scanner.image.tag) }}
{{- end }}

{{/*
Labels for prometheus-operator and Grafana objects: the component labels plus user labels
(the standard labels win on a clash).
Call with (dict "root" $ "component" "..." "extra" .Values.metrics.serviceMonitor.labels).
*/}}
{{- define "prompt-defenders.monitoringLabels" -}}
{{- $standard := include "prompt-defenders.componentLabels" . | fromYaml }}
{{- toYaml (merge $standard (.extra | default dict)) }}
{{- end }}
