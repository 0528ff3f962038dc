package lib

# Rule data lookup. Defaults live in policies/rule_data.yml (loaded under data.rule_data); `--data` files
# replace single keys. A key nobody provided reads as an empty list, which every rule treats as "nothing
# is allowed" or warns about, never as a silent pass.

default rule_data_doc := {}

rule_data_doc := data.rule_data if is_object(data.rule_data)

rule_data(key) := object.get(rule_data_doc, key, [])
