"""Training: the Lightning ``GenerativeModule`` (condition dropout derived from the sampling guidance),
atomic checkpoint IO and exact mid-epoch resume.
"""
