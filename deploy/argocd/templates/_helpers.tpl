{{/* Sync options every Application uses: create its namespace, apply server-side (large
CRDs exceed the client-side annotation limit), prune last. */}}
{{- define "platform.syncPolicy" -}}
automated:
  prune: true
  selfHeal: true
syncOptions:
  - CreateNamespace=true
  - ServerSideApply=true
  - PruneLast=true
retry:
  limit: 10
  backoff:
    duration: 10s
    factor: 2
    maxDuration: 3m
{{- end }}
