"""The retraining loop: reviewed cases -> YOLO dataset -> train -> evaluate -> ONNX export -> manifest.

Importing this package (and any module in it but `ultra`) never imports torch or ultralytics: the
edge and central must not depend on the `train` extra. `streetwatch.training.ultra` imports
ultralytics lazily, inside its functions, after switching every network fetch off.
"""
