{{- define "coldproxy.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "coldproxy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "coldproxy.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "coldproxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "coldproxy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coldproxy.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "coldproxy.redisUrl" -}}
{{- if .Values.redis.internal.enabled -}}
{{- printf "redis://%s-redis:6379/0" (include "coldproxy.fullname" .) -}}
{{- else if .Values.redis.urlSecret.name -}}
{{- "" -}}
{{- else -}}
{{- $url := required "redis.url (or redis.urlSecret) is required when redis.internal.enabled is false" .Values.redis.url -}}
{{- if or (contains "@" $url) (regexMatch "(?i)[?&](password|username)=" $url) -}}
{{- fail "redis.url holds credentials, and would land in a ConfigMap anyone who reads ConfigMaps can see: put the URL in a Secret and name it in redis.urlSecret" -}}
{{- end -}}
{{- $url -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the `api-keys` and `admin-keys` files: the user's, or this chart's (from
apiKeys.keys / adminKeys, or generated). None only with allowAnonymousWrites. */}}
{{- define "coldproxy.apiKeysSecret" -}}
{{- if .Values.apiKeys.existingSecret -}}
{{- .Values.apiKeys.existingSecret -}}
{{- else if not .Values.allowAnonymousWrites -}}
{{- printf "%s-api-keys" (include "coldproxy.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The in-chart Redis's password Secret (when it has one). */}}
{{- define "coldproxy.redisSecret" -}}
{{- if and .Values.redis.internal.enabled .Values.redis.internal.auth -}}
{{- .Values.redis.internal.existingSecret | default (printf "%s-redis" (include "coldproxy.fullname" .)) -}}
{{- end -}}
{{- end -}}
