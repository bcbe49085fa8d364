{{/* Names and labels. */}}

{{- define "prgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Leaves room for the longest suffix ("-worker-<queue>"); queue names are at most 20 characters. */}}
{{- define "prgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 35 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 35 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 35 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "prgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "backend"). */}}
{{- define "prgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prgate.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Standard labels of one component: (dict "root" $ "component" "backend"). */}}
{{- define "prgate.labels" -}}
helm.sh/chart: {{ include "prgate.chart" .root }}
{{ include "prgate.selectorLabels" . }}
app.kubernetes.io/version: {{ include "prgate.imageTag" .root | quote }}
app.kubernetes.io/part-of: prgate
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/* Selector labels of one worker queue: (dict "root" $ "queue" $queue). */}}
{{- define "prgate.workerSelectorLabels" -}}
{{ include "prgate.selectorLabels" (dict "root" .root "component" "worker") }}
prgate/queue: {{ .queue.name }}
{{- end -}}

{{- define "prgate.workerLabels" -}}
{{ include "prgate.labels" (dict "root" .root "component" "worker") }}
prgate/queue: {{ .queue.name }}
{{- end -}}

{{- define "prgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "prgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image. */}}

{{- define "prgate.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "prgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "prgate.imageTag" .) -}}
{{- end -}}

{{/* URLs. */}}

{{/* The backend's public port: pages, owner API, probes, metrics. */}}
{{- define "prgate.backendPublicServiceUrl" -}}
{{- printf "http://%s-backend:%v" (include "prgate.fullname" .) .Values.backend.service.port -}}
{{- end -}}

{{/* BACKEND_URL of the receiver and the workers: the backend's internal listener, the only port that
serves /internal/* (BACKEND_INTERNAL_PORT), reachable from their pods only (networkpolicy.yaml). */}}
{{- define "prgate.backendUrl" -}}
{{- printf "http://%s-backend:%v" (include "prgate.fullname" .) .Values.backend.internalPort -}}
{{- end -}}

{{- define "prgate.publicUrl" -}}
{{- if .Values.config.publicUrl -}}
{{- .Values.config.publicUrl -}}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts -}}
{{- $host := (first .Values.ingress.hosts).host -}}
{{- printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) $host -}}
{{- else -}}
{{- include "prgate.backendPublicServiceUrl" . -}}
{{- end -}}
{{- end -}}

{{/* BOT_PUBLIC_URL: where GitHub reaches the receiver (the manifest's default webhook URL is under it). */}}
{{- define "prgate.botPublicUrl" -}}
{{- if .Values.config.botPublicUrl -}}
{{- .Values.config.botPublicUrl -}}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts -}}
{{- include "prgate.publicUrl" . -}}
{{- else -}}
{{- printf "http://%s-receiver:%v" (include "prgate.fullname" .) .Values.receiver.service.port -}}
{{- end -}}
{{- end -}}

{{/* Env. */}}

{{/* One variable from an existing Secret: (dict "root" $ "env" "DATABASE_URL" "ref" .Values.secrets.databaseUrl). */}}
{{- define "prgate.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.name | default .root.Values.secrets.existingSecret | quote }}
      key: {{ .ref.key | quote }}
      {{- if .ref.optional }}
      optional: true
      {{- end }}
{{- end -}}

{{- define "prgate.privateKeyPath" -}}
/etc/prgate/github/private-key.pem
{{- end -}}

{{/* Read by every component. */}}
{{- define "prgate.env.common" -}}
- name: LOG_LEVEL
  value: {{ .Values.config.logLevel | quote }}
- name: LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
- name: GC_GEN0_THRESHOLD
  value: {{ .Values.config.gcGen0Threshold | quote }}
- name: PRGATE_DATA_DIR
  value: /tmp/prgate
{{- end -}}

{{/* The GitHub App: id, API base and the private key file. */}}
{{- define "prgate.env.githubApp" -}}
- name: GITHUB_APP_ID
  value: {{ .Values.config.github.appId | toString | quote }}
- name: GITHUB_API_URL
  value: {{ .Values.config.github.apiUrl | quote }}
- name: GITHUB_PRIVATE_KEY_PATH
  value: {{ include "prgate.privateKeyPath" . }}
{{- end -}}

{{/* Receiver and workers: where the backend and Redis are. */}}
{{- define "prgate.env.botShared" -}}
- name: BACKEND_URL
  value: {{ include "prgate.backendUrl" . | quote }}
{{ include "prgate.secretEnv" (dict "root" . "env" "REDIS_URL" "ref" .Values.secrets.redisUrl) }}
- name: ARQ_QUEUE_NAME
  value: {{ .Values.config.queueName | quote }}
{{- end -}}

{{/* Global and per-component extraEnv: (list $ .Values.backend.extraEnv). */}}
{{- define "prgate.env.extra" -}}
{{- $root := index . 0 -}}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- range (rest .) }}
{{- with . }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Pod pieces. */}}

{{- define "prgate.podSpecCommon" -}}
serviceAccountName: {{ include "prgate.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.automountServiceAccountToken }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{- define "prgate.container.common" -}}
image: {{ include "prgate.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end -}}

{{/* Volumes: /tmp, and with (dict "root" $ "privateKey" true) the App's private key. */}}
{{- define "prgate.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .root.Values.tmpVolume.sizeLimit }}
{{- if .privateKey }}
- name: github-private-key
  secret:
    secretName: {{ .root.Values.secrets.githubPrivateKey.name | default .root.Values.secrets.existingSecret | quote }}
    defaultMode: 0440
    items:
      - key: {{ .root.Values.secrets.githubPrivateKey.key | quote }}
        path: private-key.pem
{{- end }}
{{- end -}}

{{- define "prgate.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .privateKey }}
- name: github-private-key
  mountPath: {{ include "prgate.privateKeyPath" .root | dir }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* nodeSelector, tolerations, affinity, topologySpreadConstraints of one component's values. */}}
{{- define "prgate.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* httpGet probe: (dict "path" "/healthz" "port" "http" "probe" .Values.backend.livenessProbe). */}}
{{- define "prgate.probe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
{{- with .probe }}
{{ toYaml . }}
{{- end }}
{{- end -}}
