{{/* Names, labels and shared pod pieces of the Sluice chart. */}}

{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object name prefix, at most 63 characters minus room for suffixes. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" . }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Component names: controlplane, dataplane, migrations. Call with
     (dict "ctx" $ "component" "dataplane"). */}}
{{- define "sluice.componentSelectorLabels" -}}
{{ include "sluice.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sluice.componentLabels" -}}
{{ include "sluice.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Image reference. Call with (dict "ctx" $ "tag" TAG_OVERRIDE); an empty
     override means image.tag, then the chart's appVersion. */}}
{{- define "sluice.image" -}}
{{- $v := .ctx.Values.image -}}
{{- $tag := .tag | default $v.tag | default .ctx.Chart.AppVersion -}}
{{- if and $v.digest (not .tag) -}}
{{- printf "%s@%s" $v.repository $v.digest -}}
{{- else -}}
{{- printf "%s:%s" $v.repository (toString $tag) -}}
{{- end -}}
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Secret the chart generates for values it owns. */}}
{{- define "sluice.secretName" -}}
{{- include "sluice.fullname" . -}}
{{- end -}}

{{/* True (non-empty) when the chart's Secret has at least one key to hold. */}}
{{- define "sluice.needsSecret" -}}
{{- $s := .Values.secrets -}}
{{- if or .Values.database.url (not $s.adminToken.existingSecret) (not $s.masterKey.existingSecret) (not $s.nodeToken.existingSecret) -}}
true
{{- end -}}
{{- end -}}

{{/* Fails unless exactly one source of the database URL is configured. */}}
{{- define "sluice.validateDatabase" -}}
{{- if and .Values.database.url .Values.database.existingSecret -}}
{{- fail "database: set either database.url or database.existingSecret, not both" -}}
{{- end -}}
{{- if not (or .Values.database.url .Values.database.existingSecret) -}}
{{- fail "database: the chart runs no PostgreSQL; set database.url (postgresql://USER:PASSWORD@HOST:5432/DB) or database.existingSecret" -}}
{{- end -}}
{{- end -}}

{{/* secretKeyRef of the database URL. */}}
{{- define "sluice.databaseUrlRef" -}}
{{- if .Values.database.existingSecret -}}
name: {{ .Values.database.existingSecret }}
key: {{ .Values.database.existingSecretKey }}
{{- else -}}
name: {{ include "sluice.secretName" . }}
key: database-url
{{- end -}}
{{- end -}}

{{/* One projected-volume source per credential. Call with
     (dict "ctx" $ "items" (list "adminToken" "masterKey" "nodeToken")). */}}
{{- define "sluice.secretSources" -}}
{{- $ctx := .ctx -}}
{{- range .items }}
{{- $cfg := index $ctx.Values.secrets . }}
{{- $file := kebabcase . }}
- secret:
    name: {{ default (include "sluice.secretName" $ctx) $cfg.existingSecret }}
    items:
      - key: {{ if $cfg.existingSecret }}{{ $cfg.key }}{{ else }}{{ $file }}{{ end }}
        path: {{ $file }}
{{- end }}
{{- end -}}

{{/* topologySpreadConstraints with the component's labelSelector filled in.
     Call with (dict "ctx" $ "component" "dataplane" "constraints" LIST). */}}
{{- define "sluice.topologySpread" -}}
{{- $selector := include "sluice.componentSelectorLabels" (dict "ctx" .ctx "component" .component) | fromYaml -}}
{{- $out := list -}}
{{- range .constraints -}}
{{- $c := deepCopy . -}}
{{- if not (hasKey $c "labelSelector") -}}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $selector) -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* An HTTP probe: (dict "probe" VALUES "path" "/healthz" "port" "http"). */}}
{{- define "sluice.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
{{ toYaml .probe }}
{{- end -}}
