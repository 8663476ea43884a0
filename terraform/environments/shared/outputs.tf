# The hand-off to Kubernetes (terraform/scripts/elasticache_to_k8s.py) reads
# the redis_* and redisqueue_* outputs below. Keep their names stable.

output "redis_primary_endpoint" {
  description = "Primary endpoint host: spec.redis.external.host of the RedisQueue."
  value       = module.elasticache.primary_endpoint_address
}

output "redis_reader_endpoint" {
  description = "Reader endpoint host (replicas), for read-only tooling."
  value       = module.elasticache.reader_endpoint_address
}

output "redis_port" {
  description = "Port: spec.redis.external.port of the RedisQueue."
  value       = module.elasticache.port
}

output "redis_tls_enabled" {
  description = "Whether TLS is required: spec.redis.external.tls.enabled of the RedisQueue."
  value       = module.elasticache.tls_enabled
}

output "redis_auth_secret_arn" {
  description = "Secrets Manager ARN of the AUTH token (the token is never an output)."
  value       = module.elasticache.auth_secret_arn
}

output "redis_engine" {
  description = "Cache engine (redis or valkey) and running version."
  value       = "${module.elasticache.engine} ${module.elasticache.engine_version_actual}"
}

output "redis_auth_token_version" {
  description = "Generation of the AUTH token in Secrets Manager."
  value       = module.elasticache.auth_token_version
}

output "redis_auth_token_rotation_phase" {
  description = "Overlap while ElastiCache accepts the old and the new AUTH token (ROTATE), Complete otherwise; the hand-off reads it."
  value       = module.elasticache.auth_token_rotation_phase
}

output "redisqueue_environment" {
  description = "spec.environment of the RedisQueue (sets the pool default: 50 connections in development, 100 in production)."
  value       = local.environment
}

output "handoff_command" {
  description = "One command that turns these outputs into the Kubernetes Secret and RedisQueue."
  value       = "terraform -chdir=terraform/environments/${local.environment} output -json | python3 terraform/scripts/elasticache_to_k8s.py --fetch-secret --namespace <namespace> --name <redisqueue> --inject <app-secret> | kubectl apply --server-side -f -"
}
