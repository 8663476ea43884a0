variable "aws_region" {
  description = "AWS region of the cache, for example eu-central-1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be an AWS region name such as eu-central-1."
  }
}

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

variable "vpc_id" {
  description = "VPC of the Kubernetes cluster that runs the workers."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the cache, one per Availability Zone."
  type        = list(string)
}

variable "allowed_security_group_ids" {
  description = "Security groups of the clients (EKS nodes or pod security groups), keyed by a label."
  type        = map(string)
  default     = {}
}

variable "allowed_cidr_blocks" {
  description = "IPv4 CIDR blocks of clients, when security groups cannot be used (for example a VPN range for break-glass access)."
  type        = list(string)
  default     = []
}

variable "kms_key_arn" {
  description = "Existing customer managed KMS key; null lets the module create one."
  type        = string
  default     = null
}

variable "auth_token_version" {
  description = "Generation of the AUTH token; raise it to rotate (see the rotation runbook in terraform/README.md)."
  type        = number
  default     = 1
}

variable "auth_token_update_strategy" {
  description = "ROTATE during step 1 of a rotation, SET otherwise."
  type        = string
  default     = "SET"
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
