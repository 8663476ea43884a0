# The provider, the network and token inputs, and the outputs the hand-off reads
# are the same in every environment: they live in ../shared/ and are linked here.
locals {
  environment = "production"
}

module "elasticache" {
  source = "../../modules/elasticache"

  name        = var.name
  description = "Marketplace analysis job queue (production)"

  engine         = var.engine
  engine_version = var.engine_version
  node_type      = var.node_type
  replica_count  = var.replica_count

  vpc_id                     = var.vpc_id
  subnet_ids                 = var.subnet_ids
  allowed_security_group_ids = var.allowed_security_group_ids
  allowed_cidr_blocks        = var.allowed_cidr_blocks

  kms_key_arn = var.kms_key_arn

  auth_token_version         = var.auth_token_version
  auth_token_update_strategy = var.auth_token_update_strategy

  snapshot_retention_limit = 14
  snapshot_window          = "02:00-03:00"
  maintenance_window       = "sun:04:00-sun:05:00"

  log_retention_in_days       = 365
  alarm_topic_arn             = var.alarm_topic_arn
  create_alarm_topic          = var.alarm_topic_arn == null
  alarm_connections_threshold = var.alarm_connections_threshold
}

output "alarm_topic_arn" {
  description = "SNS topic of the alarms; subscribe the on-call channel to it."
  value       = module.elasticache.alarm_topic_arn
}
