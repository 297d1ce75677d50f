"""Building blocks of the course, one paper concept per module.

``backbones`` (image feature pyramids behind one interface) and ``coords`` (the 8-D spatial
coordinates) serve every model; the paper-specific blocks (SRU, dynamic filters, cross-modal
attention, ...) sit beside them. Import the module you need, e.g.
``from refseg_lib.nn.backbones import build_backbone``.
"""
