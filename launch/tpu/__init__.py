"""The Cloud TPU launcher (`python -m launch.tpu`): TPU VM slices through gcloud, multi-slice GKE through JobSet."""
