"""The main job: configuration → characterization → calibration → training → SPICE validation → report."""
