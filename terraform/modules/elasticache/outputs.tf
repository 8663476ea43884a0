output "replication_group_id" {
  description = "ID of the replication group."
  value       = aws_elasticache_replication_group.this.id
}

output "replication_group_arn" {
  description = "ARN of the replication group."
  value       = aws_elasticache_replication_group.this.arn
}

output "member_cluster_ids" {
  description = "Cache cluster IDs of the nodes (primary first at creation; roles swap on failover)."
  value       = local.member_cluster_ids
}

output "engine" {
  description = "Cache engine: redis or valkey."
  value       = aws_elasticache_replication_group.this.engine
}

output "engine_version_actual" {
  description = "Engine version ElastiCache is running, including the patch level."
  value       = aws_elasticache_replication_group.this.engine_version_actual
}

output "primary_endpoint_address" {
  description = "DNS name of the primary (read-write) endpoint. It follows the primary through failover; clients should always use it."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "reader_endpoint_address" {
  description = "DNS name of the reader endpoint, spreading reads over the replicas (the primary when there are none)."
  value       = aws_elasticache_replication_group.this.reader_endpoint_address
}

output "port" {
  description = "TCP port of both endpoints."
  value       = aws_elasticache_replication_group.this.port
}

output "tls_enabled" {
  description = "Whether clients must use TLS (rediss://). Always true: transit encryption is required by this module."
  value       = aws_elasticache_replication_group.this.transit_encryption_enabled
}

output "auth_secret_arn" {
  description = "ARN of the Secrets Manager secret whose current version (AWSCURRENT) is the AUTH token as a plain string. The token itself is never a Terraform output."
  value       = aws_secretsmanager_secret.auth_token.arn
}

output "auth_secret_name" {
  description = "Name of the Secrets Manager secret that holds the AUTH token."
  value       = aws_secretsmanager_secret.auth_token.name
}

output "auth_token_version" {
  description = "Generation of the AUTH token now stored in Secrets Manager."
  value       = var.auth_token_version
}

output "auth_token_update_strategy" {
  description = "Strategy of the last token hand-over to ElastiCache (ROTATE while a rotation is in progress, SET otherwise)."
  value       = var.auth_token_update_strategy
}

output "auth_token_rotation_phase" {
  description = "The token rotation's phase in the operator's words: Overlap while ElastiCache accepts the old and the new token (ROTATE), Complete once it accepts only the stored one (SET)."
  value       = var.auth_token_update_strategy == "ROTATE" ? "Overlap" : "Complete"
}

output "security_group_id" {
  description = "ID of the cache's security group."
  value       = aws_security_group.this.id
}

output "subnet_group_name" {
  description = "Name of the cache subnet group."
  value       = aws_elasticache_subnet_group.this.name
}

output "parameter_group_name" {
  description = "Name of the module's parameter group."
  value       = aws_elasticache_parameter_group.this.name
}

output "kms_key_arn" {
  description = "ARN of the customer managed KMS key in use, or null when AWS managed keys are used."
  value       = local.kms_key_arn
}

output "log_group_names" {
  description = "CloudWatch Logs group per delivered log type (slow-log, engine-log)."
  value       = { for type, group in aws_cloudwatch_log_group.this : type => group.name }
}

output "alarm_topic_arn" {
  description = "SNS topic that receives alarm and event notifications, or null."
  value       = local.alarm_topic_arn
}

output "alarm_names" {
  description = "Names of the CloudWatch alarms."
  value       = [for alarm in aws_cloudwatch_metric_alarm.this : alarm.alarm_name]
}
