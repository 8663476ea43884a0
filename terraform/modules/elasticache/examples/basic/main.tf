provider "aws" {
  region = var.aws_region
}

# The smallest useful cache: one node, reachable from the cluster's node security group,
# with the module's defaults for TLS, encryption, AUTH token, snapshots and alarms.
#
# Outside this repository, use the git:: source with a release tag instead:
#   source = "git::https://github.com/redisqueue/redisqueue-operator.git//terraform/modules/elasticache?ref=v0.1.0"
module "elasticache" {
  source = "../.."

  name      = var.name
  node_type = var.node_type

  replica_count = 0

  vpc_id                     = var.vpc_id
  subnet_ids                 = var.subnet_ids
  allowed_security_group_ids = var.allowed_security_group_ids
}
