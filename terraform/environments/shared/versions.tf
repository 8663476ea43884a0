terraform {
  required_version = ">= 1.11"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.7"
    }
  }

  # Remote state, encrypted and locked. The AUTH token never reaches state
  # (write-only arguments), but state still maps the whole setup, so it is
  # kept private: see backend.hcl.example and the README.
  backend "s3" {}
}
