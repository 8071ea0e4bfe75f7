{{/* Names and labels shared by every object of the release. */}}

{{/* The release's object name: the release name, with "-flotilla" unless it says so already. */}}
{{- define "flotilla.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "flotilla.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end -}}

{{- define "flotilla.labels" -}}
{{ include "flotilla.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Mount points of the files the worker reads; env values and volumeMounts both use them. */}}
{{- define "flotilla.temporalTlsDir" -}}/etc/flotilla/temporal-tls{{- end -}}
{{- define "flotilla.temporalApiKeyDir" -}}/etc/flotilla/temporal-api-key{{- end -}}
{{- define "flotilla.registryCaDir" -}}/etc/flotilla/content-registry-ca{{- end -}}

{{/* "true" when the worker must talk TLS to Temporal: asked for, or implied by TLS files or an API key. */}}
{{- define "flotilla.temporalTls" -}}
{{- $tls := .Values.temporal.tls -}}
{{- if or $tls.enabled $tls.caCert $tls.clientCert .Values.temporal.apiKey.existingSecret -}}
true
{{- end -}}
{{- end -}}
