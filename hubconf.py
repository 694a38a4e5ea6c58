"""torch.hub entry points for every zoo entry, e.g.

    model = torch.hub.load("path/to/cifarzoo", "cnn004_relu", source="local", pretrained=True)

`pretrained=True` loads the weights the package publishes for the entry (checked by sha256, offline), else
the best local run; `weights=` takes "published", "local" or a .safetensors path; without either the network
is untrained. Entry names use '_' for '-' here (Python names): `torch.hub.list(path, source="local")`.
"""

dependencies = ["torch", "torchvision", "timm", "safetensors"]


def _entry_point(entry: str):
    def load(pretrained: bool = False, weights=None):
        import zoo
        from zoo.hub import build

        if pretrained or weights is not None:
            return zoo.load(entry, weights)
        return build(entry).eval()

    load.__name__ = load.__qualname__ = entry.replace("-", "_").replace(".", "_")
    load.__doc__ = f"The zoo entry '{entry}' (see `cifarzoo info {entry}`); pretrained=True: its trained weights."
    return load


def _register() -> None:
    import zoo

    for name in zoo.list_models():
        point = _entry_point(name)
        globals()[point.__name__] = point


_register()
