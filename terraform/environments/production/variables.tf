variable "name" {
  description = "Name of the replication group and prefix of its resources."
  type        = string
  default     = "marketplace-analysis-prod"
}

variable "engine" {
  description = "Cache engine: redis or valkey."
  type        = string
  default     = "valkey"
}

variable "engine_version" {
  description = "Engine version as MAJOR.MINOR (7 or later)."
  type        = string
  default     = "8.0"
}

variable "node_type" {
  description = "Instance class of each node."
  type        = string
  default     = "cache.r7g.large"
}

variable "replica_count" {
  description = "Replicas next to the primary. Production keeps at least one, for automatic failover across Availability Zones."
  type        = number
  default     = 1

  validation {
    condition     = var.replica_count >= 1
    error_message = "Production needs at least one replica (automatic failover, Multi-AZ)."
  }
}

variable "kms_key_arn" {
  description = "Existing customer managed KMS key; null lets the module create one."
  type        = string
  default     = null
}

variable "alarm_topic_arn" {
  description = "Existing SNS topic for alarms and ElastiCache events; null creates an encrypted <name>-alarms topic."
  type        = string
  default     = null
}

variable "alarm_connections_threshold" {
  description = "Client connections above which the connections alarm fires (pods x REDIS_POOL_MAX_CONNECTIONS = 100, plus headroom)."
  type        = number
  default     = 2000
}
