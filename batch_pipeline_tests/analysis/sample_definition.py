"""A valid definition file the analysis tests edit into each kind of mistake."""

VALID = """\
description: Triage a ticket.
prompt: |
  Read the ticket and triage it.
  {% if custom_instructions %}Also: {{ custom_instructions }}{% endif %}
schema:
  type: object
  properties:
    category: {type: string, enum: [billing, bug]}
    urgent: {type: boolean}
    product: {type: [string, "null"]}
    tags: {type: array, items: {type: string}}
    score: {type: number, minimum: 0, maximum: 1}
  required: [category, urgent, product, tags, score]
  additionalProperties: false
examples:
  - document: The invoice is wrong.
    result: {category: billing, urgent: false, product: null, tags: [invoice], score: 0.5}
summary:
  counts: [category, urgent]
  lengths: [tags]
  numbers: [score]
  flagged: {field: urgent, equals: true}
"""
