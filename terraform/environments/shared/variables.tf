variable "aws_region" {
  description = "AWS region of the cache, for example eu-central-1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must be an AWS region name such as eu-central-1."
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
