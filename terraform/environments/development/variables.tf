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
  default     = "marketplace-analysis-dev"
}

variable "node_type" {
  description = "Instance class of the single node."
  type        = string
  default     = "cache.t4g.small"
}

variable "vpc_id" {
  description = "VPC of the development Kubernetes cluster."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the cache."
  type        = list(string)
}

variable "allowed_security_group_ids" {
  description = "Security groups of the clients, keyed by a label."
  type        = map(string)
  default     = {}
}

variable "allowed_cidr_blocks" {
  description = "IPv4 CIDR blocks of clients (for example the office VPN)."
  type        = list(string)
  default     = []
}

variable "auth_token_version" {
  description = "Generation of the AUTH token; raise it to rotate."
  type        = number
  default     = 1
}

variable "auth_token_update_strategy" {
  description = "ROTATE during step 1 of a rotation, SET otherwise."
  type        = string
  default     = "SET"
}
