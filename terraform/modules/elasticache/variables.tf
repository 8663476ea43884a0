################################################################################
# Identity
################################################################################

variable "name" {
  description = "Name of the replication group; also the prefix of every resource this module creates. Lowercase letters, digits and hyphens, starting with a letter, at most 40 characters (the ElastiCache limit)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,39}$", var.name)) && !can(regex("--|-$", var.name))
    error_message = "name must be 1-40 lowercase letters, digits or hyphens, start with a letter, and have no trailing or doubled hyphen."
  }
}

variable "description" {
  description = "Human-readable description of the replication group."
  type        = string
  default     = "Redis job queue managed by the redisqueue operator"

  validation {
    condition     = length(var.description) > 0 && length(var.description) <= 255
    error_message = "description must be 1-255 characters."
  }
}

variable "tags" {
  description = "Tags added to every resource this module creates."
  type        = map(string)
  default     = {}
}

################################################################################
# Engine and size
################################################################################

variable "engine" {
  description = "Cache engine: \"redis\" (Redis OSS) or \"valkey\". Both speak the same protocol; the operator and client library work with either."
  type        = string
  default     = "valkey"

  validation {
    condition     = contains(["redis", "valkey"], var.engine)
    error_message = "engine must be \"redis\" or \"valkey\"."
  }
}

variable "engine_version" {
  description = "Engine version as MAJOR.MINOR, for example \"8.0\" for Valkey or \"7.1\" for Redis OSS. Version 7 or later is required: transit_encryption_mode and AUTH token rotation need it."
  type        = string
  default     = "8.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+$", var.engine_version)) && try(tonumber(split(".", var.engine_version)[0]) >= 7, false)
    error_message = "engine_version must look like MAJOR.MINOR with MAJOR >= 7 (for example \"7.1\" or \"8.0\")."
  }
}

variable "node_type" {
  description = "Instance class of each node, for example \"cache.t4g.small\" or \"cache.r7g.large\"."
  type        = string

  validation {
    condition     = can(regex("^cache\\.[a-z0-9]+\\.[a-z0-9]+$", var.node_type)) && !can(regex("^cache\\.(t1|t2)\\.", var.node_type))
    error_message = "node_type must look like cache.<family>.<size>; t1 and t2 classes are refused because they cannot keep snapshots."
  }
}

variable "replica_count" {
  description = "Read replicas next to the single primary (cluster mode stays disabled). With at least one replica, automatic failover and Multi-AZ are switched on."
  type        = number
  default     = 1

  validation {
    condition     = var.replica_count >= 0 && var.replica_count <= 5 && floor(var.replica_count) == var.replica_count
    error_message = "replica_count must be a whole number from 0 to 5."
  }
}

variable "port" {
  description = "TCP port the cache listens on."
  type        = number
  default     = 6379

  validation {
    condition     = var.port >= 1024 && var.port <= 65535 && floor(var.port) == var.port
    error_message = "port must be a whole number from 1024 to 65535."
  }
}

variable "parameters" {
  description = "Engine parameters for the module's own parameter group, merged over its defaults (maxmemory-policy = noeviction, so a full cache refuses writes instead of silently dropping queued jobs)."
  type        = map(string)
  default     = {}
}

variable "auto_minor_version_upgrade" {
  description = "Apply minor engine upgrades automatically during the maintenance window."
  type        = bool
  default     = true
}

variable "apply_immediately" {
  description = "Apply changes at once instead of in the next maintenance window. AUTH token changes are always applied immediately by ElastiCache."
  type        = bool
  default     = false
}

################################################################################
# Network
################################################################################

variable "vpc_id" {
  description = "VPC that holds the cache and its security group."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be a VPC ID (vpc-...)."
  }
}

variable "subnet_ids" {
  description = "Private subnets for the subnet group, ideally one per Availability Zone so a replica lands in another zone."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for id in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", id))])
    error_message = "subnet_ids must hold at least one subnet ID (subnet-...)."
  }
}

variable "allowed_security_group_ids" {
  description = "Security groups whose members may connect on the cache port, keyed by a short label used in the rule description (for example { eks-nodes = \"sg-0123...\" })."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for id in values(var.allowed_security_group_ids) : can(regex("^sg-[0-9a-f]+$", id))])
    error_message = "allowed_security_group_ids values must be security group IDs (sg-...)."
  }
}

variable "allowed_cidr_blocks" {
  description = "IPv4 CIDR blocks that may connect on the cache port. Prefer allowed_security_group_ids; an all-addresses block is refused."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for cidr in var.allowed_cidr_blocks :
      can(cidrnetmask(cidr)) && try(tonumber(split("/", cidr)[1]) >= 8, false)
    ])
    error_message = "allowed_cidr_blocks must be IPv4 CIDR blocks with a prefix of /8 or longer; 0.0.0.0/0 is never allowed."
  }
}

################################################################################
# Encryption and AUTH token
################################################################################

variable "kms_key_arn" {
  description = "ARN of an existing customer managed KMS key for data at rest, snapshots, the AUTH token secret, the log groups and the alarm topic. When null, the module creates a dedicated key (see create_kms_key). A key you bring must let CloudWatch Logs and CloudWatch alarms use it."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)."
  }
}

variable "create_kms_key" {
  description = "Create a dedicated customer managed KMS key (with yearly rotation) when kms_key_arn is null. When false and kms_key_arn is null, AWS managed keys are used."
  type        = bool
  default     = true
}

variable "kms_key_deletion_window_in_days" {
  description = "Waiting period before a module-created KMS key is deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_key_deletion_window_in_days >= 7 && var.kms_key_deletion_window_in_days <= 30
    error_message = "kms_key_deletion_window_in_days must be from 7 to 30."
  }
}

variable "auth_token_version" {
  description = "Generation of the AUTH token. Raising it creates a new random token, stores it in Secrets Manager and sends it to ElastiCache with auth_token_update_strategy. Never lower it."
  type        = number
  default     = 1

  validation {
    condition     = var.auth_token_version >= 1 && floor(var.auth_token_version) == var.auth_token_version
    error_message = "auth_token_version must be a whole number of at least 1."
  }
}

variable "auth_token_update_strategy" {
  description = "How ElastiCache takes a token change: \"ROTATE\" accepts both the old and the new token (step 1 of a rotation), \"SET\" accepts only the stored token (step 2, and the steady state). Changing it re-sends the stored token once. DELETE is not offered: this module always requires AUTH."
  type        = string
  default     = "SET"

  validation {
    condition     = contains(["ROTATE", "SET"], var.auth_token_update_strategy)
    error_message = "auth_token_update_strategy must be \"ROTATE\" or \"SET\"."
  }
}

variable "auth_token_length" {
  description = "Length of the generated AUTH token. Letters and digits only, so it needs no escaping inside a rediss:// URL."
  type        = number
  default     = 64

  validation {
    condition     = var.auth_token_length >= 32 && var.auth_token_length <= 128 && floor(var.auth_token_length) == var.auth_token_length
    error_message = "auth_token_length must be a whole number from 32 to 128 (ElastiCache accepts 16-128)."
  }
}

variable "auth_secret_name" {
  description = "Name of the Secrets Manager secret that holds the AUTH token. Defaults to `elasticache/<name>/auth-token`."
  type        = string
  default     = null

  validation {
    condition     = var.auth_secret_name == null || can(regex("^[A-Za-z0-9/_+=.@-]{1,512}$", var.auth_secret_name))
    error_message = "auth_secret_name may hold letters, digits and /_+=.@- only, at most 512 characters."
  }
}

variable "auth_secret_recovery_window_in_days" {
  description = "Days a deleted AUTH token secret can still be restored (0 deletes it at once, which is not advised)."
  type        = number
  default     = 30

  validation {
    condition     = var.auth_secret_recovery_window_in_days == 0 || (var.auth_secret_recovery_window_in_days >= 7 && var.auth_secret_recovery_window_in_days <= 30)
    error_message = "auth_secret_recovery_window_in_days must be 0 or from 7 to 30."
  }
}

################################################################################
# Backups and maintenance
################################################################################

variable "snapshot_retention_limit" {
  description = "Days to keep automatic daily snapshots. A queue holds work that is not yet done, so backups cannot be switched off here."
  type        = number
  default     = 7

  validation {
    condition     = var.snapshot_retention_limit >= 1 && var.snapshot_retention_limit <= 35 && floor(var.snapshot_retention_limit) == var.snapshot_retention_limit
    error_message = "snapshot_retention_limit must be a whole number from 1 to 35."
  }
}

variable "snapshot_window" {
  description = "Daily UTC window for the automatic snapshot, hh:mm-hh:mm, at least 60 minutes, not overlapping maintenance_window."
  type        = string
  default     = "03:00-04:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$", var.snapshot_window))
    error_message = "snapshot_window must look like hh:mm-hh:mm (UTC), for example 03:00-04:00."
  }
}

variable "maintenance_window" {
  description = "Weekly UTC maintenance window, ddd:hh:mm-ddd:hh:mm, at least 60 minutes."
  type        = string
  default     = "sun:05:00-sun:06:00"

  validation {
    condition     = can(regex("^(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):[0-5][0-9]-(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):[0-5][0-9]$", var.maintenance_window))
    error_message = "maintenance_window must look like ddd:hh:mm-ddd:hh:mm (UTC), for example sun:05:00-sun:06:00."
  }
}

variable "final_snapshot_enabled" {
  description = "Take a final snapshot named `<name>-final` when the replication group is destroyed."
  type        = bool
  default     = true
}

################################################################################
# Logs and alarms
################################################################################

variable "log_retention_in_days" {
  description = "Retention of the slow-log and engine-log groups in CloudWatch Logs."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_in_days)
    error_message = "log_retention_in_days must be a retention period CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653)."
  }
}

variable "engine_log_enabled" {
  description = "Also deliver the engine log (besides the slow log) to CloudWatch Logs."
  type        = bool
  default     = true
}

variable "alarms_enabled" {
  description = "Create CloudWatch alarms for engine CPU, memory, evictions and client connections on every node."
  type        = bool
  default     = true
}

variable "alarm_topic_arn" {
  description = "Existing SNS topic that receives alarm and ElastiCache event notifications. Ignored when create_alarm_topic is true."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_topic_arn == null || can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]+$", var.alarm_topic_arn))
    error_message = "alarm_topic_arn must be an SNS topic ARN."
  }
}

variable "create_alarm_topic" {
  description = "Create an encrypted SNS topic `<name>-alarms` for alarm and event notifications (needs a customer managed KMS key: CloudWatch cannot publish to a topic under the AWS managed SNS key)."
  type        = bool
  default     = false
}

variable "alarm_cpu_threshold_percent" {
  description = "EngineCPUUtilization (the single Redis thread) above which the CPU alarm fires."
  type        = number
  default     = 80

  validation {
    condition     = var.alarm_cpu_threshold_percent > 0 && var.alarm_cpu_threshold_percent <= 100
    error_message = "alarm_cpu_threshold_percent must be above 0 and at most 100."
  }
}

variable "alarm_memory_threshold_percent" {
  description = "DatabaseMemoryUsagePercentage above which the memory alarm fires. With noeviction, writes start failing at 100."
  type        = number
  default     = 80

  validation {
    condition     = var.alarm_memory_threshold_percent > 0 && var.alarm_memory_threshold_percent <= 100
    error_message = "alarm_memory_threshold_percent must be above 0 and at most 100."
  }
}

variable "alarm_evictions_threshold" {
  description = "Evicted keys per 5 minutes above which the evictions alarm fires. Any eviction from a job queue is lost work, hence 0."
  type        = number
  default     = 0

  validation {
    condition     = var.alarm_evictions_threshold >= 0
    error_message = "alarm_evictions_threshold must not be negative."
  }
}

variable "alarm_connections_threshold" {
  description = "CurrConnections above which the connections alarm fires. The client pools cap at 50 (development) or 100 (production) per process, so size this to pods x pool size plus headroom."
  type        = number
  default     = 1000

  validation {
    condition     = var.alarm_connections_threshold > 0 && var.alarm_connections_threshold <= 65000
    error_message = "alarm_connections_threshold must be from 1 to 65000 (ElastiCache's maxclients)."
  }
}
