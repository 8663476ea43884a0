"""What the operator tells people and machines about itself: log lines and metric families."""
