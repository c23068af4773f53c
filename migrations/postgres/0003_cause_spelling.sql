-- Causes are stored as the plan's JSON and the metrics spell them.
UPDATE actions SET cause = 'scale_down' WHERE cause = 'scaledown';
UPDATE actions SET cause = 'scale_up' WHERE cause = 'scaleup';
