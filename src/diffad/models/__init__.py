"""Network building blocks shared by the methods: pretrained backbones and their weights."""
