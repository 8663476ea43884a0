# The outputs terraform/scripts/elasticache_to_k8s.py reads to create the auth Secret and
# an external-mode RedisQueue.

output "redis_primary_endpoint" {
  description = "DNS name of the primary endpoint."
  value       = module.elasticache.primary_endpoint_address
}

output "redis_port" {
  description = "TCP port of the cache."
  value       = module.elasticache.port
}

output "redis_tls_enabled" {
  description = "Whether clients must use TLS (always true)."
  value       = module.elasticache.tls_enabled
}

output "redis_auth_secret_arn" {
  description = "Secrets Manager secret that holds the AUTH token."
  value       = module.elasticache.auth_secret_arn
}

output "redisqueue_environment" {
  description = "spec.environment of the RedisQueue the hand-off creates."
  value       = "development"
}
