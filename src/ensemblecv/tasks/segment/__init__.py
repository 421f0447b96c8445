"""Semantic segmentation (``task: segment``): one class per pixel.

Data side: :mod:`.read` reads the VOC layout, an ``images/`` + ``masks/``
folder pair, a CSV index and COCO polygons/RLE into one
:class:`~.read.SegmentationData` (bad masks listed, never a traceback);
:mod:`.folds` stratifies folds on per-image class presence with groups kept;
:mod:`.workspace` writes the workspace tables; :mod:`.audit` and
:mod:`.convert` serve ``ensemblecv audit`` and ``ensemblecv convert``.
"""
