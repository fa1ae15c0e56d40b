"""The whole-system demo (``meterhub demo``) and its sections; the top layer with the CLI.

* :mod:`.system` - meters, hubs and the utility on one machine: recording, billing, the
  run's parameters, resume and summary;
* :mod:`.homelink` - the home link in process (meter and hub glued together);
* :mod:`.settlement` - settlement and forecasting (issue 6);
* :mod:`.fraud` - private aggregation and fraud detection (issue 13), and
  :mod:`.fraud_study`, the detection study of docs/fraud.md;
* :mod:`.dr` - demand response (issue 14);
* :mod:`.privacy` - what each recipient got from the hubs;
* :mod:`.events` - the daily-operations events (``--events``);
* :mod:`.service` - the outputs through the utility's HTTP service (``--server``).

Nothing below this package imports it (``.importlinter``).
"""
