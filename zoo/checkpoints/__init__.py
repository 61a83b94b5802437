"""Checkpoint files on a low floor (only zoo.errors and third-party libraries below it): safetensors through the
`safetensors` package (`tensors`), manifests and config.json (`manifest`), a training workdir's parameters read
without building a training program (`workdir`), and the one dispatch over every source of parameters (`sources`).
Building a model from them is `zoo.pretrained`'s."""
