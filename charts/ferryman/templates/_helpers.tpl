{{/*
The release's full name: the release name when it already contains "ferryman"
(release ferryman -> "ferryman"), else "<release>-ferryman"; at most 63 characters.
*/}}
{{- define "ferryman.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ferryman.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the operator's pod (never change on upgrade). */}}
{{- define "ferryman.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels on every object of the release. */}}
{{- define "ferryman.labels" -}}
helm.sh/chart: {{ include "ferryman.chart" . }}
{{ include "ferryman.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ferryman
{{- end -}}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "ferryman.serviceAccountName" -}}
{{- default (include "ferryman.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The operator image: repository@digest when a digest is set, else repository:tag
(tag "" = the chart's appVersion). */}}
{{- define "ferryman.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret of notification endpoint .name (endpoint values .e): its own secretName,
else <release>-notify-<name> when the chart makes one (hmacKey or secretUrl), else "". */}}
{{- define "ferryman.notifySecret" -}}
{{- if .e.secretName -}}
{{- .e.secretName -}}
{{- else if or .e.hmacKey .e.secretUrl -}}
{{- printf "%s-notify-%s" (include "ferryman.fullname" .root) .name | trunc 253 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Provider and notification Secret names (sorted, unique): the only Secrets the
operator may read. */}}
{{- define "ferryman.providerSecrets" -}}
{{- $names := list -}}
{{- range $name, $p := .Values.settings.providers -}}
{{- if $p.secretName -}}{{- $names = append $names $p.secretName -}}{{- end -}}
{{- end -}}
{{- range $name, $e := (.Values.settings.notifications | default dict).endpoints -}}
{{- $secret := include "ferryman.notifySecret" (dict "root" $ "name" $name "e" $e) -}}
{{- if $secret -}}{{- $names = append $names $secret -}}{{- end -}}
{{- end -}}
{{- $names | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* settings.notifications as the operator reads it: endpoints without hmacKey or
secretUrl (those are in the Secret), pointing at their Secret; signed when given hmacKey
or signed (never sent unsigned then). */}}
{{- define "ferryman.notifications" -}}
{{- $n := .Values.settings.notifications | default dict -}}
{{- $endpoints := dict -}}
{{- range $name, $e := $n.endpoints -}}
{{- $ep := dict "format" ($e.format | default "generic") -}}
{{- if $e.url -}}{{- $_ := set $ep "url" $e.url -}}{{- end -}}
{{- if $e.timeoutSeconds -}}{{- $_ := set $ep "timeoutSeconds" $e.timeoutSeconds -}}{{- end -}}
{{- $secret := include "ferryman.notifySecret" (dict "root" $ "name" $name "e" $e) -}}
{{- if $secret -}}{{- $_ := set $ep "secretName" $secret -}}{{- end -}}
{{- if and $secret (or $e.signed $e.hmacKey) -}}{{- $_ := set $ep "signed" true -}}{{- end -}}
{{- $_ := set $endpoints $name $ep -}}
{{- end -}}
{{- dict "endpoints" $endpoints "retry" ($n.retry | default dict) | toJson -}}
{{- end -}}

{{/* The operator's settings file (ferryman.settings.Settings, camelCase keys). */}}
{{- define "ferryman.settings" -}}
providers: {{ .Values.settings.providers | default dict | toJson }}
allowInlineAddresses: {{ .Values.settings.allowInlineAddresses }}
storageInitializerImage: {{ default (include "ferryman.image" .) .Values.settings.storageInitializerImage | quote }}
metricsAddress: {{ .Values.metrics.address | quote }}
metricsPort: {{ .Values.metrics.port }}
jsonLogs: {{ eq .Values.logFormat "json" }}
notifications: {{ include "ferryman.notifications" . }}
leaderElection:
  enabled: {{ .Values.leaderElection.enabled }}
  leaseName: {{ include "ferryman.leaseName" . | quote }}
  leaseDurationSeconds: {{ .Values.leaderElection.leaseDurationSeconds }}
  renewDeadlineSeconds: {{ .Values.leaderElection.renewDeadlineSeconds }}
  retryPeriodSeconds: {{ .Values.leaderElection.retryPeriodSeconds }}
{{- end -}}

{{/* The leader-election Lease, in the release namespace. */}}
{{- define "ferryman.leaseName" -}}
{{- printf "%s-leader" (include "ferryman.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Checks values.schema.json cannot express (it cannot compare two values). */}}
{{- define "ferryman.validate" -}}
{{- if and .Values.metrics.port (eq (int .Values.metrics.port) (int .Values.probes.port)) -}}
{{- fail (printf "metrics.port and probes.port must differ (both %v)" .Values.probes.port) -}}
{{- end -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) -}}
{{- fail (printf "replicas %v needs leaderElection.enabled: without it only one pod may run" .Values.replicas) -}}
{{- end -}}
{{- $le := .Values.leaderElection -}}
{{- if not (gt (float64 $le.leaseDurationSeconds) (float64 $le.renewDeadlineSeconds)) -}}
{{- fail "leaderElection.leaseDurationSeconds must be greater than renewDeadlineSeconds" -}}
{{- end -}}
{{- if not (gt (float64 $le.renewDeadlineSeconds) (mulf 1.2 $le.retryPeriodSeconds)) -}}
{{- fail "leaderElection.renewDeadlineSeconds must be greater than 1.2 x retryPeriodSeconds" -}}
{{- end -}}
{{- end -}}
