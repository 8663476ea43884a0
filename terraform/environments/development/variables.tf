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
