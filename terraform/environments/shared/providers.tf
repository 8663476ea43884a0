provider "aws" {
  region = var.aws_region

  default_tags {
    tags = {
      Project     = "redisqueue-operator"
      Environment = local.environment
      ManagedBy   = "terraform"
    }
  }
}
