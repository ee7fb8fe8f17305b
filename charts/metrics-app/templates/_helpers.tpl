{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "metrics-app.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of every object: the release name, unless it already contains the chart name. */}}
{{- define "metrics-app.fullname" -}}
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

{{- define "metrics-app.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the release, whichever component it belongs to. */}}
{{- define "metrics-app.commonLabels" -}}
helm.sh/chart: {{ include "metrics-app.chart" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: metrics-app
{{- end }}

{{/* Labels on the app's objects (the server). */}}
{{- define "metrics-app.labels" -}}
{{ include "metrics-app.commonLabels" . }}
{{ include "metrics-app.selectorLabels" . }}
app.kubernetes.io/version: {{ include "metrics-app.imageTag" . | quote }}
{{- end }}

{{/*
Labels that select the app's pods (immutable once deployed). The component label keeps every
selector of the app (Service, NetworkPolicy, PDB, HPA pod set, ServiceMonitor) off the Valkey
and helm-test pods, whose labels would otherwise be a superset of these.
*/}}
{{- define "metrics-app.selectorLabels" -}}
app.kubernetes.io/name: {{ include "metrics-app.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{/* Labels that select the bundled Valkey pod: its own name, so no app selector matches it. */}}
{{- define "metrics-app.redisSelectorLabels" -}}
app.kubernetes.io/name: valkey
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: store
{{- end }}

{{/* Labels on the Valkey objects. */}}
{{- define "metrics-app.redisLabels" -}}
{{ include "metrics-app.commonLabels" . }}
{{ include "metrics-app.redisSelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.redis.image.tag | quote }}
{{- end }}

{{/* The container image: repository@digest when a digest is set, else repository:tag. */}}
{{- define "metrics-app.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "metrics-app.imageTag" .) }}
{{- end }}
{{- end }}

{{/* Pods that run at the least: the PDB exists only when this exceeds 1. */}}
{{- define "metrics-app.minPods" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.minReplicas | int }}{{ else }}{{ .Values.replicaCount | int }}{{ end }}
{{- end }}

{{- define "metrics-app.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "metrics-app.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "metrics-app.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* Name and key of the Secret holding PASSWORD, whichever mode created it. */}}
{{- define "metrics-app.secretName" -}}
{{- if .Values.secret.existingSecret.name }}
{{- .Values.secret.existingSecret.name }}
{{- else }}
{{- printf "%s-password" (include "metrics-app.fullname" .) }}
{{- end }}
{{- end }}

{{- define "metrics-app.secretKey" -}}
{{- if .Values.secret.existingSecret.name }}
{{- .Values.secret.existingSecret.key }}
{{- else }}
{{- "PASSWORD" }}
{{- end }}
{{- end }}

{{- define "metrics-app.redisName" -}}
{{- printf "%s-redis" (include "metrics-app.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Seconds in a Go-style duration such as 5s, 1m30s, 500ms (whole seconds, rounded up). */}}
{{- define "metrics-app.seconds" -}}
{{- $d := . | toString }}
{{- $total := 0.0 }}
{{- range $m := regexFindAll "[0-9.]+(ms|h|m|s)" $d -1 }}
{{- $n := regexFind "[0-9.]+" $m | float64 }}
{{- $u := trimPrefix (regexFind "[0-9.]+" $m) $m }}
{{- if eq $u "h" }}{{ $total = addf $total (mulf $n 3600) }}
{{- else if eq $u "m" }}{{ $total = addf $total (mulf $n 60) }}
{{- else if eq $u "s" }}{{ $total = addf $total $n }}
{{- else if eq $u "ms" }}{{ $total = addf $total (divf $n 1000) }}
{{- end }}
{{- end }}
{{- ceil $total | int }}
{{- end }}

{{/*
Checks that values make sense together; each failure says what to change. Rendered by
deployment.yaml so that every install, template and lint runs it.
*/}}
{{- define "metrics-app.validate" -}}
{{- $modes := 0 }}
{{- if .Values.secret.existingSecret.name }}{{ $modes = add1 $modes }}{{ end }}
{{- if .Values.secret.externalSecret.enabled }}{{ $modes = add1 $modes }}{{ end }}
{{- if .Values.secret.create.enabled }}{{ $modes = add1 $modes }}{{ end }}
{{- if eq $modes 0 }}
{{- fail "metrics-app needs the admin PASSWORD: set exactly one of secret.existingSecret.name (an existing Secret), secret.externalSecret.enabled=true (from a secret manager through External Secrets), or secret.create.enabled=true with secret.create.password (development only)" }}
{{- end }}
{{- if gt $modes 1 }}
{{- fail "metrics-app: choose only one secret mode among secret.existingSecret.name, secret.externalSecret.enabled and secret.create.enabled" }}
{{- end }}
{{- if and .Values.secret.create.enabled (not .Values.secret.create.password) }}
{{- fail "metrics-app: secret.create.enabled=true needs secret.create.password" }}
{{- end }}
{{- if and (eq .Values.app.store "memory") (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) }}
{{- fail "metrics-app: with app.store=memory every replica would count on its own (duplicate and out-of-order values); use replicaCount=1 without autoscaling, or app.store=redis with redis.enabled=true or app.redisUrl" }}
{{- end }}
{{- if and .Values.redis.enabled (ne .Values.app.store "redis") }}
{{- fail "metrics-app: redis.enabled=true deploys a Valkey that nothing would use with app.store=memory; set app.store=redis to share the counter through it, or redis.enabled=false" }}
{{- end }}
{{- $minPods := include "metrics-app.minPods" . | int }}
{{- if and .Values.podDisruptionBudget.enabled (gt $minPods 1) (not (kindIs "string" .Values.podDisruptionBudget.minAvailable)) }}
{{- if ge (int .Values.podDisruptionBudget.minAvailable) $minPods }}
{{- fail (printf "metrics-app: podDisruptionBudget.minAvailable (%d) must be below the pod count (%d), or no pod can ever be evicted and node drains hang" (int .Values.podDisruptionBudget.minAvailable) $minPods) }}
{{- end }}
{{- end }}
{{- if and (eq .Values.app.store "redis") (not .Values.redis.enabled) (not .Values.app.redisUrl) (not .Values.app.redisSentinels) }}
{{- fail "metrics-app: app.store=redis needs redis.enabled=true, app.redisUrl or app.redisSentinels" }}
{{- end }}
{{- if and .Values.app.redisSentinels (or .Values.redis.enabled .Values.app.redisUrl) }}
{{- fail "metrics-app: app.redisSentinels names the Redis primary through Sentinel; set redis.enabled=false and app.redisUrl empty (one way to find the counter)" }}
{{- end }}
{{- $drain := include "metrics-app.seconds" .Values.app.drainDelay | int }}
{{- $stop := include "metrics-app.seconds" .Values.app.shutdownTimeout | int }}
{{- if le (int .Values.terminationGracePeriodSeconds) (add $drain $stop) }}
{{- fail (printf "metrics-app: terminationGracePeriodSeconds (%d) must exceed app.drainDelay + app.shutdownTimeout (%ds), or the kubelet kills pods mid-drain" (int .Values.terminationGracePeriodSeconds) (add $drain $stop)) }}
{{- end }}
{{- if eq (int .Values.managementPort) 8080 }}
{{- fail "metrics-app: managementPort must differ from 8080, the public listener's port (the service refuses to start with both on one port: probes need a listener of their own); keep the default 9090 or pick another free port" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "metrics-app: autoscaling.maxReplicas must be >= autoscaling.minReplicas" }}
{{- end }}
{{- end }}
