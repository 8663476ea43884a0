locals {
  engine_major           = split(".", var.engine_version)[0]
  parameter_group_family = "${var.engine}${local.engine_major}"

  num_cache_clusters = 1 + var.replica_count
  replicated         = var.replica_count > 0

  # ElastiCache names the members of a cluster-mode-disabled replication group
  # <id>-001, <id>-002, ... Building the names here keeps them known at plan
  # time, so the per-node alarms can be keyed on them.
  member_cluster_ids = [for i in range(local.num_cache_clusters) : format("%s-%03d", var.name, i + 1)]

  create_kms_key = var.kms_key_arn == null && var.create_kms_key
  kms_key_arn    = var.kms_key_arn != null ? var.kms_key_arn : (local.create_kms_key ? aws_kms_key.this[0].arn : null)

  alarm_topic_arn = var.create_alarm_topic ? aws_sns_topic.alarms[0].arn : var.alarm_topic_arn
  alarm_actions   = local.alarm_topic_arn == null ? [] : [local.alarm_topic_arn]

  log_types = var.engine_log_enabled ? ["slow-log", "engine-log"] : ["slow-log"]

  # A job queue must never lose work silently: with noeviction a full cache
  # answers writes with an OOM error the client retries and alerts on,
  # instead of dropping queued jobs to make room.
  parameters = merge({ "maxmemory-policy" = "noeviction" }, var.parameters)

  auth_secret_name = coalesce(var.auth_secret_name, "elasticache/${var.name}/auth-token")

  # The write-only token is only sent to ElastiCache when this number changes.
  # It changes when a new token is generated (auth_token_version) and again
  # when the strategy flips from ROTATE to SET, so the second step of a
  # rotation re-sends the same stored token with SET and retires the old one.
  auth_token_wo_version = var.auth_token_version * 2 + (var.auth_token_update_strategy == "SET" ? 1 : 0)
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

################################################################################
# KMS key (optional): data at rest, snapshots, secret, logs, alarm topic
################################################################################

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:This is a key policy, where resource "*" means this one key. The account statement is the AWS default key policy, which hands access control to IAM.
  #checkov:skip=CKV_AWS_111:This is a key policy, where resource "*" means this one key; the service statements are bound to this account and to this cache's log groups.
  #checkov:skip=CKV_AWS_356:This is a key policy: KMS only accepts "*" as the resource of a key policy statement, and it means this one key.
  count = local.create_kms_key ? 1 : 0

  # The account keeps full control so IAM policies decide who may use the key
  # (ElastiCache and Secrets Manager use it through grants on the caller's
  # behalf).
  statement {
    sid       = "AccountAdministration"
    actions   = ["kms:*"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogsEncryptsThisCacheLogs"
    actions = [
      "kms:Decrypt*",
      "kms:Describe*",
      "kms:Encrypt*",
      "kms:GenerateDataKey*",
      "kms:ReEncrypt*",
    ]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["logs.${data.aws_region.current.region}.amazonaws.com"]
    }

    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.region}:${data.aws_caller_identity.current.account_id}:log-group:/aws/elasticache/${var.name}/*"]
    }
  }

  # CloudWatch alarms publish to the encrypted alarm topic.
  statement {
    sid       = "CloudWatchAlarmsPublishToEncryptedTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]

    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_kms_key" "this" {
  count = local.create_kms_key ? 1 : 0

  description             = "ElastiCache ${var.name}: data at rest, snapshots, AUTH token secret, logs and alarms"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_key_deletion_window_in_days
  policy                  = data.aws_iam_policy_document.kms[0].json

  tags = var.tags
}

resource "aws_kms_alias" "this" {
  count = local.create_kms_key ? 1 : 0

  name          = "alias/elasticache/${var.name}"
  target_key_id = aws_kms_key.this[0].key_id
}

################################################################################
# Network: subnet group and a security group that admits only named clients
################################################################################

resource "aws_elasticache_subnet_group" "this" {
  name        = var.name
  description = "Private subnets for ElastiCache ${var.name}"
  subnet_ids  = var.subnet_ids

  tags = var.tags
}

resource "aws_security_group" "this" {
  name_prefix = "${var.name}-elasticache-"
  description = "ElastiCache ${var.name}: TLS on port ${var.port} from allowed clients only"
  vpc_id      = var.vpc_id

  # No inline rules: every rule is its own resource below, and none of them
  # opens the port to the whole internet.

  tags = merge(var.tags, { Name = "${var.name}-elasticache" })

  lifecycle {
    create_before_destroy = true

    precondition {
      condition     = length(var.allowed_security_group_ids) + length(var.allowed_cidr_blocks) > 0
      error_message = "Give allowed_security_group_ids or allowed_cidr_blocks: without either, no client can reach the cache."
    }
  }
}

resource "aws_vpc_security_group_ingress_rule" "from_security_groups" {
  for_each = var.allowed_security_group_ids

  security_group_id            = aws_security_group.this.id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  description                  = "Cache clients: ${each.key}"

  tags = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "from_cidr_blocks" {
  for_each = toset(var.allowed_cidr_blocks)

  security_group_id = aws_security_group.this.id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.port
  to_port           = var.port
  description       = "Cache clients in ${each.value}"

  tags = var.tags
}

# Replicas sync from the primary on the cache port. Allowing the group to
# reach itself keeps that working without opening anything else.
resource "aws_vpc_security_group_ingress_rule" "self" {
  security_group_id            = aws_security_group.this.id
  referenced_security_group_id = aws_security_group.this.id
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  description                  = "Replication between the nodes of ${var.name}"

  tags = var.tags
}

resource "aws_vpc_security_group_egress_rule" "self" {
  security_group_id            = aws_security_group.this.id
  referenced_security_group_id = aws_security_group.this.id
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  description                  = "Replication between the nodes of ${var.name}"

  tags = var.tags
}

################################################################################
# Parameter group (never the default one, so parameters can be changed)
################################################################################

resource "aws_elasticache_parameter_group" "this" {
  name        = "${var.name}-${local.parameter_group_family}"
  family      = local.parameter_group_family
  description = "Parameters for ElastiCache ${var.name}"

  dynamic "parameter" {
    for_each = local.parameters

    content {
      name  = parameter.key
      value = parameter.value
    }
  }

  tags = var.tags

  # A major engine upgrade needs a group of the new family before the
  # replication group can switch to it.
  lifecycle {
    create_before_destroy = true
  }
}

################################################################################
# AUTH token: generated ephemerally, stored in Secrets Manager, never in state
################################################################################

# An ephemeral resource exists only for the duration of one plan or apply and
# is never written to state or plan files. A fresh value is drawn on every run
# but only stored when auth_token_version changes (secret_string_wo_version).
ephemeral "random_password" "auth_token" {
  length  = var.auth_token_length
  special = false
}

resource "aws_secretsmanager_secret" "auth_token" {
  #checkov:skip=CKV2_AWS_57:The token is rotated by raising auth_token_version (ROTATE, then SET, see the README runbook). A Secrets Manager rotation Lambda would change only the secret and lock every client out of the cache.
  name                    = local.auth_secret_name
  description             = "AUTH token of ElastiCache ${var.name} (plain string)"
  kms_key_id              = local.kms_key_arn
  recovery_window_in_days = var.auth_secret_recovery_window_in_days

  tags = var.tags
}

resource "aws_secretsmanager_secret_version" "auth_token" {
  secret_id                = aws_secretsmanager_secret.auth_token.id
  secret_string_wo         = ephemeral.random_password.auth_token.result
  secret_string_wo_version = var.auth_token_version
}

# The replication group reads the token back from Secrets Manager rather than
# from the random generator, so the SET step of a rotation sends exactly the
# token that clients already received in the ROTATE step.
ephemeral "aws_secretsmanager_secret_version" "auth_token" {
  secret_id = aws_secretsmanager_secret.auth_token.arn

  depends_on = [aws_secretsmanager_secret_version.auth_token]
}

################################################################################
# Logs
################################################################################

resource "aws_cloudwatch_log_group" "this" {
  for_each = toset(local.log_types)

  name              = "/aws/elasticache/${var.name}/${each.key}"
  retention_in_days = var.log_retention_in_days
  kms_key_id        = local.kms_key_arn

  tags = var.tags
}

################################################################################
# Replication group
################################################################################

resource "aws_elasticache_replication_group" "this" {
  #checkov:skip=CKV_AWS_31:The check only knows the legacy auth_token argument. The token is set through the write-only auth_token_wo so it stays out of state; the custom check CKV2_RQ_2 (terraform/checkov/) verifies that, and transit encryption is required below.
  #checkov:skip=CKV2_AWS_50:Checkov cannot evaluate the derived flag. Failover and Multi-AZ follow replica_count (on with any replica); production refuses replica_count below 1, development runs a single node by choice.
  replication_group_id = var.name
  description          = var.description

  engine               = var.engine
  engine_version       = var.engine_version
  node_type            = var.node_type
  port                 = var.port
  parameter_group_name = aws_elasticache_parameter_group.this.name

  # Cluster mode disabled: one primary, optionally replicas. Failover and
  # Multi-AZ need a replica to fail over to.
  num_cache_clusters         = local.num_cache_clusters
  automatic_failover_enabled = local.replicated
  multi_az_enabled           = local.replicated

  subnet_group_name  = aws_elasticache_subnet_group.this.name
  security_group_ids = [aws_security_group.this.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = local.kms_key_arn

  # "required", not "preferred": the server refuses plaintext connections.
  transit_encryption_enabled = true
  transit_encryption_mode    = "required"

  auth_token_wo              = ephemeral.aws_secretsmanager_secret_version.auth_token.secret_string
  auth_token_wo_version      = local.auth_token_wo_version
  auth_token_update_strategy = var.auth_token_update_strategy

  snapshot_retention_limit  = var.snapshot_retention_limit
  snapshot_window           = var.snapshot_window
  maintenance_window        = var.maintenance_window
  final_snapshot_identifier = var.final_snapshot_enabled ? "${var.name}-final" : null

  auto_minor_version_upgrade = var.auto_minor_version_upgrade
  apply_immediately          = var.apply_immediately
  notification_topic_arn     = local.alarm_topic_arn

  dynamic "log_delivery_configuration" {
    for_each = toset(local.log_types)

    content {
      destination      = aws_cloudwatch_log_group.this[log_delivery_configuration.key].name
      destination_type = "cloudwatch-logs"
      log_format       = "json"
      log_type         = log_delivery_configuration.key
    }
  }

  tags = var.tags
}

################################################################################
# Alarms and their (optional) topic
################################################################################

resource "aws_sns_topic" "alarms" {
  count = var.create_alarm_topic ? 1 : 0

  name              = "${var.name}-alarms"
  kms_master_key_id = local.kms_key_arn

  tags = var.tags

  lifecycle {
    precondition {
      condition     = local.kms_key_arn != null
      error_message = "create_alarm_topic needs a customer managed KMS key (kms_key_arn or create_kms_key = true)."
    }
  }
}

locals {
  alarms = {
    engine-cpu = {
      metric      = "EngineCPUUtilization"
      statistic   = "Average"
      threshold   = var.alarm_cpu_threshold_percent
      periods     = 3
      description = "Engine CPU (the Redis command thread) above ${var.alarm_cpu_threshold_percent}% for 15 minutes."
    }
    memory = {
      metric      = "DatabaseMemoryUsagePercentage"
      statistic   = "Average"
      threshold   = var.alarm_memory_threshold_percent
      periods     = 2
      description = "Memory above ${var.alarm_memory_threshold_percent}% of maxmemory; with noeviction, writes fail at 100%."
    }
    evictions = {
      metric      = "Evictions"
      statistic   = "Sum"
      threshold   = var.alarm_evictions_threshold
      periods     = 1
      description = "Keys were evicted: queued jobs may have been lost."
    }
    connections = {
      metric      = "CurrConnections"
      statistic   = "Maximum"
      threshold   = var.alarm_connections_threshold
      periods     = 2
      description = "More than ${var.alarm_connections_threshold} client connections: a pool is leaking or too many workers run."
    }
  }

  node_alarms = var.alarms_enabled ? {
    for pair in setproduct(local.member_cluster_ids, keys(local.alarms)) :
    "${pair[0]}-${pair[1]}" => merge(local.alarms[pair[1]], { cluster_id = pair[0] })
  } : {}
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each = local.node_alarms

  alarm_name          = each.key
  alarm_description   = each.value.description
  namespace           = "AWS/ElastiCache"
  metric_name         = each.value.metric
  statistic           = each.value.statistic
  period              = 300
  evaluation_periods  = each.value.periods
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "missing"
  dimensions          = { CacheClusterId = each.value.cluster_id }
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  tags = var.tags

  depends_on = [aws_elasticache_replication_group.this]
}
