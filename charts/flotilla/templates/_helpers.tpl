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

{{/* The Temporal settings, for the worker and for its setup init container alike. */}}
{{- define "flotilla.temporalEnv" -}}
{{- $tls := .Values.temporal.tls -}}
{{- $apiKey := .Values.temporal.apiKey -}}
{{- $tlsDir := include "flotilla.temporalTlsDir" . -}}
{{- $apiKeyDir := include "flotilla.temporalApiKeyDir" . -}}
- name: TEMPORAL_ADDRESS
  value: {{ required "temporal.address is required: the Temporal frontend as host:port, e.g. --set temporal.address=temporal-frontend.temporal:7233" .Values.temporal.address | quote }}
- name: TEMPORAL_NAMESPACE
  value: {{ .Values.temporal.namespace | quote }}
{{- if include "flotilla.temporalTls" . }}
- name: TEMPORAL_TLS
  value: "true"
{{- end }}
{{- if $tls.caCert }}
- name: TEMPORAL_TLS_CA_FILE
  value: {{ printf "%s/ca.crt" $tlsDir }}
{{- end }}
{{- if $tls.clientCert }}
- name: TEMPORAL_TLS_CERT_FILE
  value: {{ printf "%s/tls.crt" $tlsDir }}
- name: TEMPORAL_TLS_KEY_FILE
  value: {{ printf "%s/tls.key" $tlsDir }}
{{- end }}
{{- with $tls.serverName }}
- name: TEMPORAL_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- if $apiKey.existingSecret }}
- name: TEMPORAL_API_KEY_FILE
  value: {{ printf "%s/api-key" $apiKeyDir }}
{{- end }}
{{- end -}}

{{/* The Temporal TLS and API key files, mounted where temporalEnv says they are. */}}
{{- define "flotilla.temporalMounts" -}}
{{- $tls := .Values.temporal.tls -}}
{{- $apiKey := .Values.temporal.apiKey -}}
{{- $tlsDir := include "flotilla.temporalTlsDir" . -}}
{{- $apiKeyDir := include "flotilla.temporalApiKeyDir" . -}}
{{- if $tls.existingSecret }}
- name: temporal-tls
  mountPath: {{ $tlsDir }}
  readOnly: true
{{- end }}
{{- if $apiKey.existingSecret }}
- name: temporal-api-key
  mountPath: {{ $apiKeyDir }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The volumes behind flotilla.temporalMounts (the worker's and the controller's). */}}
{{- define "flotilla.temporalVolumes" -}}
{{- $tls := .Values.temporal.tls -}}
{{- $apiKey := .Values.temporal.apiKey -}}
{{- if $tls.existingSecret }}
- name: temporal-tls
  secret:
    secretName: {{ $tls.existingSecret }}
    defaultMode: 0440
    items:
      {{- if $tls.caCert }}
      - key: ca.crt
        path: ca.crt
      {{- end }}
      {{- if $tls.clientCert }}
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
      {{- end }}
{{- end }}
{{- if $apiKey.existingSecret }}
- name: temporal-api-key
  secret:
    secretName: {{ $apiKey.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $apiKey.key }}
        path: api-key
{{- end }}
{{- end -}}
