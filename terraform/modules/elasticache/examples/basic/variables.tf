variable "aws_region" {
  description = "AWS region of the cache, for example eu-central-1."
  type        = string
}

variable "name" {
  description = "Name of the replication group and prefix of its resources."
  type        = string
  default     = "redisqueue-example"
}

variable "node_type" {
  description = "Instance class of the single node."
  type        = string
  default     = "cache.t4g.small"
}

variable "vpc_id" {
  description = "VPC of the Kubernetes cluster that runs the operator and the apps."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the cache."
  type        = list(string)
}

variable "allowed_security_group_ids" {
  description = "Security groups of the clients (for example the cluster's nodes), keyed by a label."
  type        = map(string)
}
