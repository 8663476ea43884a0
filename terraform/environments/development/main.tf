# The provider, the network and token inputs, and the outputs the hand-off reads
# are the same in every environment: they live in ../shared/ and are linked here.
locals {
  environment = "development"
}

# A shared development cache in AWS: the same module and security posture as
# production, one small node. Laptops use the local Redis from
# docker-compose.yml instead (REDIS_DEV_* in .env).
module "elasticache" {
  source = "../../modules/elasticache"

  name        = var.name
  description = "Marketplace analysis job queue (development)"

  engine         = "valkey"
  engine_version = "8.0"
  node_type      = var.node_type
  replica_count  = 0

  vpc_id                     = var.vpc_id
  subnet_ids                 = var.subnet_ids
  allowed_security_group_ids = var.allowed_security_group_ids
  allowed_cidr_blocks        = var.allowed_cidr_blocks

  auth_token_version         = var.auth_token_version
  auth_token_update_strategy = var.auth_token_update_strategy

  snapshot_retention_limit            = 1
  final_snapshot_enabled              = false
  auth_secret_recovery_window_in_days = 7
  kms_key_deletion_window_in_days     = 7

  alarm_connections_threshold = 500
}
