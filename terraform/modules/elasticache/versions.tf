terraform {
  # Ephemeral resources and write-only arguments arrived in Terraform 1.11
  # (OpenTofu 1.11). The AUTH token relies on both to stay out of state and
  # plan files.
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # auth_token_wo on aws_elasticache_replication_group needs a 6.x release
      # from late August 2026 or later; see the README ("Provider versions").
      version = ">= 6.0, < 7.0"
    }
    random = {
      source = "hashicorp/random"
      # ephemeral "random_password" first shipped in 3.7.0.
      version = ">= 3.7"
    }
  }
}
