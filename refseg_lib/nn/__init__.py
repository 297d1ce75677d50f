"""Building blocks of the course, one paper concept per module.

``backbones`` (image feature pyramids behind one interface) and ``coords`` (the 8-D spatial
coordinates) serve every model; the paper-specific blocks (SRU, dynamic filters, cross-modal
attention, ...) sit beside them. Import the module you need, e.g.
``from refseg_lib.nn.backbones import build_backbone``.

Modules: ``backbones``, ``coords``, ``sru`` (SRU and the multimodal SRU of DMN), ``convlstm``
(ConvLSTM of CMSA's fusion ablation and recurrent instance segmentation), ``anchors`` (YOLOv3
anchors and boxes of MCN), ``text_encoders`` (transformer and pretrained word encoders).
"""
