{{/*
Names and labels shared by every template.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "redisqueue-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The base name of every object: fullnameOverride, or the release name when it already contains
the chart name (so `helm install redisqueue-operator` gives the same names as the plain
manifests), or release-chart. Cluster-scoped objects (ClusterRole, ClusterRoleBinding) carry it
too, so two releases never collide.
*/}}
{{- define "redisqueue-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "redisqueue-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "redisqueue-operator.labels" -}}
helm.sh/chart: {{ include "redisqueue-operator.chart" . }}
{{ include "redisqueue-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: redisqueue
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The labels that select the operator pod; immutable in a Deployment, so keep them few. */}}
{{- define "redisqueue-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "redisqueue-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "redisqueue-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "redisqueue-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* registry/repository:tag or registry/repository@digest; tag defaults to appVersion. */}}
{{- define "redisqueue-operator.image" -}}
{{- $registry := default .Values.image.registry .Values.global.imageRegistry -}}
{{- $repository := .Values.image.repository -}}
{{- if $registry -}}
{{- $repository = printf "%s/%s" $registry $repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/*
The API version the ServiceMonitor and PrometheusRule need. They are rendered only when the
cluster serves it: enabling them where prometheus-operator is not installed skips them instead
of failing the whole install.
*/}}
{{- define "redisqueue-operator.monitoringAPIAvailable" -}}
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}true{{- end -}}
{{- end -}}

{{/*
The operator's namespaced permissions: the rules of manifests/operator/20-clusterrole.yaml (a
test compares them). A ClusterRole in the default install, a Role per watched namespace
otherwise.
*/}}
{{- define "redisqueue-operator.rules" -}}
  # The resource itself: watch it, and patch it for the framework's finalizer and
  # bookkeeping annotations (the framework patches; it never replaces the object).
  - apiGroups: [redisqueue.dev]
    resources: [redisqueues]
    verbs: [get, list, watch, patch]
  # Conditions, endpoint, latency and observedGeneration (merge patches).
  - apiGroups: [redisqueue.dev]
    resources: [redisqueues/status]
    verbs: [get, patch]
  # Owned objects carry ownerReferences with blockOwnerDeletion, which clusters with the
  # OwnerReferencesPermissionEnforcement admission plugin allow only with this permission.
  - apiGroups: [redisqueue.dev]
    resources: [redisqueues/finalizers]
    verbs: [update]
  # Secrets: get referenced passwords and CA bundles (and an inject target's type, to refuse
  # special Secrets), create the generated password Secret, server-side apply the contract
  # keys into app Secrets (patch; create when missing), list its own injected Secrets by label
  # to release those that left spec.inject, and delete the generated Secret under
  # deletionPolicy Delete; watch them, filtered in memory to the ones RedisQueues reference,
  # so a rotated password is followed without polling. No update: the operator never uses it.
  - apiGroups: [""]
    resources: [secrets]
    verbs: [get, list, watch, create, patch, delete]
  # provision mode: the Redis Service and StatefulSet, read first (get: only one controlled
  # by its RedisQueue is changed), then server-side applied (create, patch); the StatefulSet's
  # readiness is read too. Deleted by the garbage collector through their ownerReferences, so
  # no delete verb.
  - apiGroups: [""]
    resources: [services]
    verbs: [get, create, patch]
  - apiGroups: [apps]
    resources: [statefulsets]
    verbs: [get, create, patch]
  # Apps that read the contract only at start (spec.inject[].restart, whose author must hold
  # patch on them): read a rollout and restart it with one pod-template annotation. The
  # object-shape policy lets the operator change nothing else in an app's workload.
  - apiGroups: [apps]
    resources: [deployments]
    verbs: [get, patch]
  # The data volume: read by name (whose it is: the uid it is stamped with), grown when
  # storage.size grows, stamped when a RedisQueue adopts it, deleted under deletionPolicy
  # Delete.
  - apiGroups: [""]
    resources: [persistentvolumeclaims]
    verbs: [get, patch, delete]
  # The NetworkPolicy in front of each provisioned Redis: read, server-side applied, deleted
  # when the spec turns it off.
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [get, create, patch, delete]
  # Events about reconciles and probes, on the RedisQueue.
  - apiGroups: ["", events.k8s.io]
    resources: [events]
    verbs: [create, patch]
  # The framework watches namespaces and CRDs to notice resources and namespaces that come
  # and go while it runs.
  - apiGroups: [""]
    resources: [namespaces]
    verbs: [list, watch]
  - apiGroups: [apiextensions.k8s.io]
    resources: [customresourcedefinitions]
    verbs: [list, watch]
{{- end }}

{{/*
The operator's cluster-scoped permissions beyond namespaces and CRDs (in the ClusterRole of
both install modes): its admission policies, read by name, and the reviews --auth asks for.
*/}}
{{- define "redisqueue-operator.clusterRules" -}}
  # Fail closed: the operator reads its admission policies and their bindings at start and
  # every five minutes, and acts on no RedisQueue while they are not installed as shipped.
  - apiGroups: [admissionregistration.k8s.io]
    resources: [validatingadmissionpolicies, validatingadmissionpolicybindings]
    verbs: [get]
    resourceNames:
      {{- range (include "redisqueue-operator.admissionPolicyNames" . | fromJsonArray) }}
      - {{ . }}
      {{- end }}
  # --auth: who a bearer token belongs to, and whether that user may read health and metrics
  # (as kube-rbac-proxy asks).
  - apiGroups: [authentication.k8s.io]
    resources: [tokenreviews]
    verbs: [create]
  - apiGroups: [authorization.k8s.io]
    resources: [subjectaccessreviews]
    verbs: [create]
{{- end }}

{{/* The names of the five admission policies (and their bindings), as a JSON list. */}}
{{- define "redisqueue-operator.admissionPolicyNames" -}}
{{- $name := include "redisqueue-operator.fullname" . -}}
{{- list (printf "%s-author-permissions" $name) (printf "%s-author-provision" $name) (printf "%s-object-shapes" $name) (printf "%s-restarts" $name) (printf "%s-policy" $name) | toJson -}}
{{- end }}

{{/* REDISQUEUE_ADMISSION_POLICIES: each policy's role and installed name. */}}
{{- define "redisqueue-operator.admissionPolicyEnv" -}}
{{- $name := include "redisqueue-operator.fullname" . -}}
{{- printf "author-permissions=%s-author-permissions,author-provision=%s-author-provision,object-shapes=%s-object-shapes,operator-restarts=%s-restarts,operator-policy=%s-policy" $name $name $name $name $name -}}
{{- end }}
