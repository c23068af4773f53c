-- Billing types are stored as the policy file, fleets and traces spell them;
-- a code the vendor page does not list, as the code.
UPDATE instances SET billing_type = 'pay_as_you_go' WHERE billing_type = 'pay-as-you-go';
UPDATE instances SET billing_type = substr(billing_type, 15, length(billing_type) - 15)
    WHERE billing_type LIKE 'billing type "%"';
