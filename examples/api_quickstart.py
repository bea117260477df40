# %% [markdown]
# # memspice from Python: calibrate → train → validate
#
# A small run of the whole flow on the built-in card: characterize the inverter neuron in
# ngspice, train a 64-32-10 network on scikit-learn's 8×8 digits for five epochs, and simulate
# 200 test images in ngspice to see how well the trained model predicts its circuit.
# Every quantity is in SI units (V, Ω, S, m, s, W, J). It takes well under a minute.
#
# Run it as a script (`python examples/api_quickstart.py`) or cell by cell in an editor that
# understands `# %%` cells. Files go to `$MEMSPICE_OUT` (default `api_quickstart_out/`).

# %%
import os
from pathlib import Path

import memspice

out_dir = Path(os.environ.get("MEMSPICE_OUT", "api_quickstart_out"))

# %% Technology and calibration: two ngspice runs fit the neuron models
tech = memspice.builtin()  # generic BSIM4 card at ±0.25 V
sizing = memspice.InverterSizing(wn_m=0.6e-6, wp_m=1.0e-6)  # PHAX's reference sizing (m)
calibration = memspice.calibrate(tech, sizing)
neuron = calibration.activation.noninverting
print(f"neuron gain {neuron.gain:.1f} V/V, tanh fit RMS "
      f"{1e3 * calibration.residuals['noninverting_rms']:.2f} mV")

# %% Data: features in [0, 1] become input voltages between the rails
data = memspice.load_dataset("digits")
train_set, test_set = memspice.train_test_split(data, test_fraction=0.2, seed=0)
rails = calibration.rails
x_train = memspice.features_to_voltages(train_set.features, rails.vdd, rails.vss)
x_test = memspice.features_to_voltages(test_set.features, rails.vdd, rails.vss)

# %% Train a 64-32-10 network whose forward pass solves the circuit's DC equations
settings = memspice.default_train_config(epochs=5, lr=0.01)  # `memspice run` trains 80 epochs at 0.04
network = memspice.train(calibration, x_train, train_set.labels, hidden=(32,), mode="coupled",
                         config=settings)
model_accuracy = memspice.accuracy(network.predict(x_test), test_set.labels)
print(f"topology {network.topology}, conductances "
      f"{1e6 * min(g.min() for g in network.conductances):.2f}–"
      f"{1e6 * max(g.max() for g in network.conductances):.2f} µS, "
      f"model test accuracy {100 * model_accuracy:.1f} %")

# %% Validate: simulate 200 test images in ngspice and compare with the model
report = memspice.validate_network(network, tech, x_test[:200], test_set.labels[:200],
                                   out_dir / "validate", sizing=sizing, write_files=False,
                                   settings=memspice.RunSettings(force=True))  # re-runnable cell
c = report.comparison
output_rms = c.layer_errors.iloc[-1]["rms_v"]
print(f"SPICE accuracy {100 * c.spice_accuracy:.1f} %, model {100 * c.model_accuracy:.1f} %, "
      f"agreement {100 * c.agreement:.1f} %, output RMS error {1e3 * output_rms:.3f} mV, "
      f"static power {1e6 * report.power_w.mean():.1f} µW per inference")
