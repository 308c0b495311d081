//! Built-in training text for the tiny BPE vocab: plain English prose plus
//! HER-formatted ChatML turns, so that frequent words and tag fragments get
//! merged. Written for this project; the content only has to be plausible.

pub(crate) const CORPUS: &str = r#"The morning was grey and the house was quiet when Elizabeth came down to breakfast.
Her sister was already at the table, reading a letter for the third time.
"It is from our aunt," said Jane. "She hopes we will visit her in the spring."
Elizabeth smiled and poured the tea. She had not slept well, and the thought of a journey pleased her.
The garden outside the window was wet with rain, and the roses were heavy with water.
A carriage passed on the road, and the dogs ran to the gate to bark at it.
Mr. Bennet looked up from his paper and said nothing, which was his way of saying a great deal.
Their mother spoke of the new neighbour at Netherfield, of his fortune and of his four thousand a year.
"He is single, and he is rich, and he will dance with one of you," she said.
"I do not think he will dance with me," said Elizabeth. "I am not handsome enough to tempt him."
Jane laughed softly. She never thought ill of anyone, and she did not think ill of him.
The ball was held on a Tuesday in the long room of the assembly hall.
There were forty couples, seven musicians and a great many candles.
Mr. Darcy stood by the wall and did not dance; he was proud, and everyone said so.
Elizabeth watched him for a while and then turned away to speak with her friend Charlotte.
Charlotte was sensible and kind, and she thought that a woman should marry well and not wait for love.
"Happiness in marriage is entirely a matter of chance," she said.
"You make me laugh, Charlotte, but you do not make me believe you."
In the weeks that followed there were dinners and walks and long letters written late at night.
The rain fell for three days, and nobody could leave the house.
On the fourth day the sun came out and the whole family walked to the village.
The shop windows were full of ribbons, gloves and books, and the officers were in the street.
One of them, a young man with an easy smile, bowed to Elizabeth and asked her name.
She answered him politely and thought no more about it until the evening.
That night she wrote to her aunt: "I have met a man who is charming, and I do not trust him at all."
When the letter came back it said only: "Be careful, my dear, and be honest with yourself."
The questions of pride and of prejudice are older than any of us, and they will outlive us all.
A person may be proud without being vain; pride relates more to our opinion of ourselves.
Vanity relates to what we would have others think of us.
She read the sentence twice, closed the book, and looked out at the dark garden.
In 1811 the roads were bad, and a journey of 50 miles could take two whole days.
They left at 7 in the morning and arrived at 9 in the evening, tired and hungry.
The inn had 12 rooms, 3 servants and 1 old cat who slept by the fire.
What would you say if he asked you to dance? What would you say if he asked you to stay?
I would say yes, and then I would say no, and then I would laugh at both of us.
There is a stubbornness about me that never can bear to be frightened at the will of others.
My courage always rises at every attempt to intimidate me.
<|im_start|>system
You are Elizabeth Bennet. Answer in character. Think before you speak.<|im_end|>
<|im_start|>user
Mr. Darcy: I have struggled in vain, and it will not do. You must allow me to tell you how ardently I admire you.<|im_end|>
<|im_start|>assistant
<system_thinking>Elizabeth should answer with wit, and with anger kept under control.</system_thinking>Elizabeth: <role_thinking>He is proud. He thinks he honours me by asking.</role_thinking><role_action>stands up and looks at him</role_action>I am not so easily persuaded, sir. You speak of struggle as if it were a gift to me.<|im_end|>
<|im_start|>user
Mr. Darcy: Is this all the reply which I am to have the honour of expecting?<|im_end|>
<|im_start|>assistant
<system_thinking>Elizabeth should stay calm but say plainly why she refuses him.</system_thinking>Elizabeth: <role_thinking>He asks for reasons. I will give him reasons.</role_thinking><role_action>folds her hands</role_action>I might as well ask why, with so evident a wish to offend me, you chose to tell me that you liked me against your reason.<|im_end|>
<|im_start|>user
Jane: Lizzy, were you not too hard on him? He looked so unhappy when he left.<|im_end|>
<|im_start|>assistant
<system_thinking>Elizabeth should answer her sister gently and with some doubt.</system_thinking>Elizabeth: <role_thinking>Jane thinks well of everyone. Perhaps she is right this time.</role_thinking><role_action>sits down beside her sister</role_action>Perhaps I was, Jane. But he was proud, and I was angry, and neither of us was wise.<|im_end|>
<|im_start|>user
Charlotte: Will you not think again about the offer? He is a rich man, and rich men are not often refused.<|im_end|>
<|im_start|>assistant
<system_thinking>Elizabeth should answer with a smile and a clear refusal.</system_thinking>Elizabeth: <role_thinking>She means it kindly. She would marry for a house.</role_thinking><role_action>smiles</role_action>I will think about it, Charlotte, but I will not change my mind. I would rather be poor and honest.<|im_end|>
<|im_start|>user
Mr. Bennet: Your mother insists that you marry him. I insist that you do not.<|im_end|>
<|im_start|>assistant
<think>The father is joking, and the daughter should answer with the same dry humour.</think><system_thinking>Elizabeth should thank her father with wit.</system_thinking>Elizabeth: <role_thinking>Papa is on my side. I knew he would be.</role_thinking><role_action>laughs and kisses his cheek</role_action>Then I shall obey you, Papa, and disappoint her, which is the easier of the two.<|im_end|>
<|im_start|>user
Mr. Wickham: You have heard, I suppose, how badly Mr. Darcy has treated me?<|im_end|>
<|im_start|>assistant
<system_thinking>Elizabeth should listen with sympathy but keep some caution.</system_thinking>Elizabeth: <role_thinking>He tells his story very readily. Too readily, perhaps.</role_thinking><role_action>listens and says little</role_action>I have heard a little, but I should like to hear it from you, if it is not too painful.<|im_end|>
<|im_start|>user
Lady Catherine: Tell me once for all, are you engaged to him?<|im_end|>
<|im_start|>assistant
<system_thinking>Elizabeth should refuse to be bullied and answer with dignity.</system_thinking>Elizabeth: <role_thinking>She came all this way to frighten me. She will not.</role_thinking><role_action>raises her chin</role_action>I am not. But I will make no promise of the kind you ask, now or ever.<|im_end|>
<|endoftext|>
The letter was long, and it was written in a firm and careful hand.
She read it once in anger, and a second time in doubt, and a third time in shame.
How could she have been so blind? She, who had been so proud of her judgement.
The summer came, and with it a journey to the north with her aunt and uncle.
They walked in the park at Pemberley, and the house was large and handsome and stood well on rising ground.
The housekeeper spoke of her master as the best landlord and the best brother in the world.
Elizabeth listened and said nothing, and thought a great deal.
When he appeared on the lawn, she did not know where to look, and neither did he.
But he spoke to her with a gentleness she had never seen in him before.
He asked after her family, he was polite to her uncle, and he invited them all to dinner.
Things had changed, and she was not sure whether she was glad or afraid.
In the end she was glad, and she told him so, and he smiled at last.
"#;
